"""Sender settings: environment variables with the LATENTWIRE_ prefix, or CLI flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class SenderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENTWIRE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001
    # Encoder checkpoints: a ladder directory (one subdirectory per level), a checkpoint directory or
    # an encoder.safetensors file; unset = the shipped ladder.
    encoder: Path | None = None
    # Quality level of /encode without ?quality= (it must be in the ladder); unset = level 4 when the
    # ladder has it (latentwire.ladder.PREFERRED_QUALITY), else its middle level.
    default_quality: int | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    # 4096 × 4096: refuses decompression bombs before Pillow decodes any pixel.
    max_image_pixels: int = 4096 * 4096
    max_batch: int = 256


@lru_cache
def get_settings() -> SenderSettings:
    return SenderSettings()
