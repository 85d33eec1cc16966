"""The sender service: loads the encoder half only and turns images into codes.

latentwire-sender                       # 127.0.0.1:8001, the shipped default encoder
latentwire-sender --port 9001 --encoder runs/seed/encoder.safetensors
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request

import latentwire
from latentwire.errors import LatentwireError
from latentwire.ladder import EncoderLadder, describe
from latentwire.web import health_router, install_error_handlers
from latentwire_sender.routes import router
from latentwire_sender.settings import SenderSettings, get_settings

log = logging.getLogger("latentwire.sender")


def load_ladder(settings: SenderSettings) -> EncoderLadder:
    return EncoderLadder.load(settings.encoder, default_quality=settings.default_quality)


def create_app(settings: SenderSettings | None = None, *, ladder: EncoderLadder | None = None) -> FastAPI:
    """The ASGI app. Without ``ladder``, the encoders named by ``settings`` load at startup
    (``/readyz`` answers 200 once they have)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ladder is None:
            app.state.ladder = load_ladder(settings)
        log.info("sender ready: %s", describe(app.state.ladder))
        yield

    app = FastAPI(
        title="latentwire sender",
        version=latentwire.__version__,
        description="Encodes digit images into compact codes. Holds the encoder half only.",
        lifespan=lifespan,
    )
    app.state.ladder = ladder
    app.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(app)
    app.include_router(health_router(_ready_model))
    app.include_router(router)
    return app


def _ready_model(request: Request) -> str | None:
    ladder: EncoderLadder | None = request.app.state.ladder
    return None if ladder is None else ladder.select().model_id


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentwire-sender", description="Serve POST /encode (images → codes).")
    p.add_argument("--host", help="bind address (env LATENTWIRE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env LATENTWIRE_PORT, default 8001)")
    p.add_argument(
        "--encoder", type=Path, help="encoder checkpoint file or directory (env LATENTWIRE_ENCODER)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = get_settings().model_copy(update=overrides)
    try:  # load before binding the port: a bad checkpoint fails fast with a clear message
        ladder = load_ladder(settings)
    except LatentwireError as exc:
        log.error("cannot load the encoder: %s (%s)", exc, exc.hint)
        return 2
    uvicorn.run(create_app(settings, ladder=ladder), host=settings.host, port=settings.port, log_level="info")
    return 0


def run() -> None:
    sys.exit(main())
