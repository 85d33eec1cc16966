"""Settings both services share, read from the environment (or given as CLI flags).

Every field of a service's settings is read from ``LATENTWIRE_<SERVICE>_<FIELD>`` first and then
from ``LATENTWIRE_<FIELD>``: ``LATENTWIRE_SENDER_PORT=9001`` moves the sender only,
``LATENTWIRE_HOST=0.0.0.0`` binds both. So one environment (a compose file, a shell) can hold
both services' settings without renaming anything, and the older single names keep working.
An empty variable counts as unset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["ServiceSettings"]

#: One origin of ``cors_origins``: scheme://host[:port], no path (or ``*``: every origin).
_ORIGIN = re.compile(r"https?://[^/?#\s,]+")


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
    #: ``text`` (readable lines) or ``json`` (one JSON object per line, every logger's lines).
    log_format: Literal["text", "json"] = "text"
    #: One log line per request (id, method, route, status, latency, bytes, level).
    access_log: bool = True
    # Access control (latentwire_http.auth): off unless a key is configured. Every route but
    # /healthz, /readyz (and /metrics while ``metrics_open``) then needs one of the keys, as
    # ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are never logged.
    #: Comma-separated API keys.
    api_keys: SecretStr | None = None
    #: A file of API keys, one per line (blank lines and lines starting with ``#`` ignored).
    api_keys_file: Path | None = None
    #: /metrics answers without a key (a scraper inside the deployment needs none).
    metrics_open: bool = True
    #: Comma-separated origins (``scheme://host[:port]``, or ``*`` for any) whose browser pages
    #: may call this service (CORS, latentwire_http.cors); empty: no CORS at all.
    cors_origins: str = ""

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: str) -> str:
        origins = [o.strip().removesuffix("/") for o in value.split(",") if o.strip()]
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin: give scheme://host[:port] (no path), "
                    "e.g. http://127.0.0.1:8001, or * for any origin"
                )
        return ",".join(origins)

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> ServiceSettings:
        if self.max_pending < self.max_batch:
            raise ValueError(
                f"max_pending ({self.max_pending}) must be at least max_batch ({self.max_batch}):"
                " a full batch request could never be admitted"
            )
        return self

    @model_validator(mode="after")
    def _key_file_readable(self) -> ServiceSettings:
        if self.api_keys_file is not None:
            self.api_key_values()  # a missing, unreadable or empty key file fails at startup
        return self

    def api_key_values(self) -> list[str]:
        """The configured API keys: ``api_keys`` and ``api_keys_file`` together (empty: no access control).

        A key file that holds no key is an error rather than silently open access.
        """
        keys = [k.strip() for k in (self.api_keys.get_secret_value() if self.api_keys else "").split(",")]
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                problem = f"api_keys_file {self.api_keys_file}: cannot read it ({exc.strerror})"
                raise ValueError(problem) from None
            from_file = [line.strip() for line in lines if not line.strip().startswith("#")]
            if not any(from_file):
                raise ValueError(f"api_keys_file {self.api_keys_file} holds no key (one per line)")
            keys += from_file
        return list(dict.fromkeys(k for k in keys if k))

    def cors_origin_values(self) -> list[str]:
        """The origins allowed to call the service from a browser (empty: no CORS middleware)."""
        return [origin for origin in self.cors_origins.split(",") if origin]

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
