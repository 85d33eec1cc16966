"""Sender settings: ``LATENTWIRE_SENDER_<NAME>``, then ``LATENTWIRE_<NAME>``, or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from latentwire_http.settings import ServiceSettings

__all__ = ["SenderSettings"]


class SenderSettings(ServiceSettings):
    service_prefix: ClassVar[str] = "LATENTWIRE_SENDER_"

    port: int = Field(default=8001, ge=0, le=65535)
    # Encoder checkpoints: a ladder directory (one subdirectory per level), a checkpoint directory or
    # an encoder.safetensors file; unset = the shipped ladder.
    encoder: Path | None = None
    # Quality level of /encode without ?quality= (it must be in the ladder); unset = level 4 when the
    # ladder has it (latentwire.ladder.PREFERRED_QUALITY), else its middle level.
    default_quality: int | None = None
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # 4096 × 4096: refuses decompression bombs before Pillow decodes any pixel.
    max_image_pixels: int = Field(default=4096 * 4096, ge=1)
    max_batch: int = Field(default=256, ge=1)
    # Threads that decode large images (a 28×28 digit is decoded on the event loop: ~30 µs).
    decode_threads: int = Field(default=2, ge=1)
    # Request bodies held in memory at once, over all requests; a body that does not fit is
    # refused with 503 before it is read. Bounds memory under a flood of 10 MB photos.
    max_inflight_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Serve the browser demo (latentwire_demo's static page) at /demo/, open without API keys
    # (the page's own requests still need one). Its query parameters name the services' URLs.
    demo: bool = True
