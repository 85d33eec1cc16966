"""Dependencies the routes declare; tests swap them with ``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from latentwire.codec import Compressor
from latentwire.ladder import EncoderLadder
from latentwire_sender.settings import SenderSettings, get_settings


def get_ladder(request: Request) -> EncoderLadder:
    ladder: EncoderLadder = request.app.state.ladder
    return ladder


LadderDep = Annotated[EncoderLadder, Depends(get_ladder)]

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


def get_compressor(
    ladder: LadderDep, quality: int | None = QualityQuery, denoise: bool = DenoiseQuery
) -> Compressor:
    """The model the request's ?quality= and ?denoise= pick (400 with the offered levels if none)."""
    return ladder.select(quality=quality, denoise=denoise)


CompressorDep = Annotated[Compressor, Depends(get_compressor)]
SettingsDep = Annotated[SenderSettings, Depends(get_settings)]
