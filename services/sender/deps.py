"""Dependencies the routes declare; tests swap them with ``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from latentwire.ladder import EncoderLadder
from latentwire_sender.settings import SenderSettings, get_settings


def get_ladder(request: Request) -> EncoderLadder:
    ladder: EncoderLadder = request.app.state.ladder
    return ladder


LadderDep = Annotated[EncoderLadder, Depends(get_ladder)]
SettingsDep = Annotated[SenderSettings, Depends(get_settings)]
