"""What the routes take from the app: the settings, the ladder and the batcher (``app.state``).

All ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread, a thread hop per
dependency per request (measured: ~10% of the event loop's time on /encode).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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

_QUALITY_TEXT = (
    "quality level: 1 (smallest codes) … 6 (best quality), 0 the tutorial's 8-bit model; "
    "default: GET /v1/model's default_quality (4 in the shipped ladder)"
)
_DENOISE_TEXT = "use the denoising model: for noisy inputs, returns a code of the clean digit"

#: ?quality= and ?denoise= of an app built before its ladder is loaded: any level 0…15.
QualityQuery = Query(None, ge=0, le=15, description=_QUALITY_TEXT)
DenoiseQuery = Query(False, description=_DENOISE_TEXT)


def _levels(ladder: EncoderLadder, *, denoise: bool) -> list[int]:
    return sorted(level for level, d in ladder.by_level if d == denoise)


def quality_query(ladder: EncoderLadder | None) -> Any:
    """``?quality=``: an enum of the ladder's levels in the OpenAPI document (generic without one).

    At run time any integer 0…15 passes FastAPI (422 otherwise) and a level the ladder does not
    serve is refused by ``EncoderLadder.select`` (400 with the levels it serves).
    """
    if ladder is None:
        return QualityQuery
    levels = sorted({level for level, _ in ladder.by_level})
    plain, denoising = _levels(ladder, denoise=False), _levels(ladder, denoise=True)
    default_denoise = ladder.select(denoise=True).level if denoising else None
    text = (
        f"quality level, one of {plain}: the larger, the better the quality and the longer the code "
        f"(0: the tutorial's 8-bit model, a 1,583-byte v1 code). Omitted: {ladder.default_quality}"
    )
    if denoising:
        text += (
            f", or {default_denoise} with denoise=true. With denoise=true only the denoising levels "
            f"{denoising} are served: another level answers 400"
        )

    def exact(schema: dict[str, Any]) -> None:
        schema.clear()
        schema.update({"type": "integer", "enum": levels})

    return Query(None, ge=0, le=15, description=text, json_schema_extra=exact)


def denoise_query(ladder: EncoderLadder | None) -> Any:
    """``?denoise=``: a boolean when the ladder has a denoising model, else only ``false``."""
    if ladder is None:
        return DenoiseQuery
    denoising = _levels(ladder, denoise=True)
    if not denoising:
        return Query(
            False,
            description="denoising is not offered by this ladder: only false (true answers 400)",
            json_schema_extra={"enum": [False]},
        )
    default = ladder.select(denoise=True).level
    return Query(
        False,
        description=f"{_DENOISE_TEXT}. Served at quality {denoising}; without ?quality= the "
        f"denoising model of level {default}; with a quality that has no denoising model: 400",
    )


def compressor_dependency(ladder: EncoderLadder | None) -> Callable[..., Awaitable[Compressor]]:
    """``get_compressor`` with ``ladder``'s exact ?quality= and ?denoise= in the OpenAPI document."""
    quality_param, denoise_param = quality_query(ladder), denoise_query(ladder)

    async def select_compressor(
        ladder: LadderDep, quality: int | None = quality_param, denoise: bool = denoise_param
    ) -> Compressor:
        """The model the request's ?quality= and ?denoise= pick (400 with the offered levels if none)."""
        return ladder.select(quality=quality, denoise=denoise)

    return select_compressor


async def get_compressor(
    ladder: LadderDep, quality: int | None = QualityQuery, denoise: bool = DenoiseQuery
) -> Compressor:
    """The model the request's ?quality= and ?denoise= pick (400 with the offered levels if none)."""
    return ladder.select(quality=quality, denoise=denoise)


CompressorDep = Annotated[Compressor, Depends(get_compressor)]
