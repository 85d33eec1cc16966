"""What the routes take from the app: the settings, the ladder and the batcher (``app.state``).

All ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread, a thread hop per
dependency per request (measured: ~10% of the event loop's time on /encode).
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Request

from latentwire.codec import Decompressor
from latentwire.ladder import DecoderLadder
from latentwire_http.batching import MicroBatcher
from latentwire_receiver.settings import ReceiverSettings


class DecodeItem(NamedTuple):
    """One code, its framing already checked: the model it names, its payload, the PNG's scale."""

    model: Decompressor
    payload: bytes
    scale: int


#: The worker gives back each code's PNG.
DecodeBatcher = MicroBatcher[DecodeItem, bytes]


async def get_ladder(request: Request) -> DecoderLadder:
    ladder: DecoderLadder = request.app.state.ladder
    return ladder


async def get_settings(request: Request) -> ReceiverSettings:
    settings: ReceiverSettings = request.app.state.settings
    return settings


async def get_batcher(request: Request) -> DecodeBatcher:
    batcher: MicroBatcher[Any, Any] = request.app.state.batcher
    return batcher


LadderDep = Annotated[DecoderLadder, Depends(get_ladder)]
SettingsDep = Annotated[ReceiverSettings, Depends(get_settings)]
BatcherDep = Annotated[DecodeBatcher, Depends(get_batcher)]
