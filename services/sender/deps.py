"""What the routes take from the app: the settings, the ladder and the batcher (``app.state``).

All ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread, a thread hop per
dependency per request (measured: ~40% of a small request's time).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Query, Request

from latentwire.codec import Compressor
from latentwire.ladder import EncoderLadder
from latentwire_http.batching import MicroBatcher
from latentwire_sender.settings import SenderSettings

#: One digit to encode with one model; the worker gives back its payload (unframed code).
EncodeItem = tuple[Compressor, np.ndarray]
EncodeBatcher = MicroBatcher[EncodeItem, bytes]


async def get_ladder(request: Request) -> EncoderLadder:
    ladder: EncoderLadder = request.app.state.ladder
    return ladder


async def get_settings(request: Request) -> SenderSettings:
    settings: SenderSettings = request.app.state.settings
    return settings


async def get_batcher(request: Request) -> EncodeBatcher:
    batcher: MicroBatcher[Any, Any] = request.app.state.batcher
    return batcher


LadderDep = Annotated[EncoderLadder, Depends(get_ladder)]
SettingsDep = Annotated[SenderSettings, Depends(get_settings)]
BatcherDep = Annotated[EncodeBatcher, Depends(get_batcher)]

QualityQuery = Query(
    None,
    ge=0,
    le=15,
    description="quality level: 1 (smallest codes) … 5 (best quality), 0 the tutorial's 8-bit model; "
    "default: GET /v1/model's default_quality (4 in the shipped ladder)",
)
DenoiseQuery = Query(
    False, description="use the denoising model: for noisy inputs, returns a code of the clean digit"
)


async def get_compressor(
    ladder: LadderDep, quality: int | None = QualityQuery, denoise: bool = DenoiseQuery
) -> Compressor:
    """The model the request's ?quality= and ?denoise= pick (400 with the offered levels if none)."""
    return ladder.select(quality=quality, denoise=denoise)


CompressorDep = Annotated[Compressor, Depends(get_compressor)]
