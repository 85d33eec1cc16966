"""Dependencies the routes declare; tests swap them with ``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from latentwire.ladder import DecoderLadder
from latentwire_receiver.settings import ReceiverSettings, get_settings


def get_ladder(request: Request) -> DecoderLadder:
    ladder: DecoderLadder = request.app.state.ladder
    return ladder


LadderDep = Annotated[DecoderLadder, Depends(get_ladder)]
SettingsDep = Annotated[ReceiverSettings, Depends(get_settings)]
