"""Settings both services share, read from the environment (or given as CLI flags).

Every field of a service's settings is read from ``LATENTWIRE_<SERVICE>_<FIELD>`` first and then
from ``LATENTWIRE_<FIELD>``: ``LATENTWIRE_SENDER_PORT=9001`` moves the sender only,
``LATENTWIRE_HOST=0.0.0.0`` binds both. So one environment (a compose file, a shell) can hold
both services' settings without renaming anything, and the older single names keep working.
An empty variable counts as unset.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """The base of ``SenderSettings`` and ``ReceiverSettings``."""

    model_config = SettingsConfigDict(env_prefix="LATENTWIRE_", extra="ignore", env_ignore_empty=True)
    #: The service's own prefix, e.g. ``LATENTWIRE_SENDER_``; read before the shared ``LATENTWIRE_``.
    service_prefix: ClassVar[str] = ""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    #: Most images (sender) or codes (receiver) in one batch request.
    max_batch: int = Field(default=256, ge=1)
    # Micro-batching: concurrent requests share one forward pass of the network.
    #: Most items in one forward pass.
    batch_size: int = Field(default=64, ge=1)
    #: How long a forward pass waits for more items, in milliseconds, while other requests are
    #: on their way (it never waits when no other request is in flight).
    batch_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    #: Items admitted at once (queued or in the network); beyond it requests get 503 + Retry-After.
    max_pending: int = Field(default=2048, ge=1)
    #: torch's intra-op threads for the one inference thread (the event loop needs the other core).
    torch_threads: int = Field(default=1, ge=1)
    #: Seconds in-flight requests get to finish after SIGTERM.
    graceful_timeout_s: float = Field(default=10.0, ge=0.0)
    log_level: str = "info"

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> ServiceSettings:
        if self.max_pending < self.max_batch:
            raise ValueError(
                f"max_pending ({self.max_pending}) must be at least max_batch ({self.max_batch}):"
                " a full batch request could never be admitted"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        own = EnvSettingsSource(settings_cls, env_prefix=cls.service_prefix, env_ignore_empty=True)
        return (init_settings, own, env_settings, dotenv_settings, file_secret_settings)
