"""Receiver settings: environment variables with the LATENTWIRE_ prefix, or CLI flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ReceiverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENTWIRE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    # Decoder checkpoints: a ladder directory (one subdirectory per level), a checkpoint directory or
    # a decoder.safetensors file; unset = the shipped ladder.
    decoder: Path | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch: int = 1024
    # Largest nearest-neighbour upscale of the returned PNG (28·16 = 448 px).
    max_scale: int = 16


@lru_cache
def get_settings() -> ReceiverSettings:
    return ReceiverSettings()
