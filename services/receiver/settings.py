"""Receiver settings: ``LATENTWIRE_RECEIVER_<NAME>``, then ``LATENTWIRE_<NAME>``, or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from latentwire_http.settings import ServiceSettings

__all__ = ["ReceiverSettings"]


class ReceiverSettings(ServiceSettings):
    service_prefix: ClassVar[str] = "LATENTWIRE_RECEIVER_"

    port: int = Field(default=8002, ge=0, le=65535)
    # Decoder checkpoints: a ladder directory (one subdirectory per level), a checkpoint directory or
    # a decoder.safetensors file; unset = the shipped ladder.
    decoder: Path | None = None
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_batch: int = Field(default=1024, ge=1)
    # Largest nearest-neighbour upscale of the returned PNG (28·16 = 448 px).
    max_scale: int = Field(default=16, ge=1)
