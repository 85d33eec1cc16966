"""The receiver service: loads the decoder halves only and turns codes back into digits.

latentwire-receiver                       # 127.0.0.1:8002, the shipped ladder
latentwire-receiver --port 9002 --decoder runs/seed/decoder.safetensors
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
from latentwire.ladder import DecoderLadder, describe
from latentwire.web import health_router, install_error_handlers
from latentwire_receiver.routes import router
from latentwire_receiver.settings import ReceiverSettings, get_settings

log = logging.getLogger("latentwire.receiver")


def create_app(settings: ReceiverSettings | None = None, *, ladder: DecoderLadder | None = None) -> FastAPI:
    """The ASGI app. Without ``ladder``, the decoders named by ``settings`` load at startup
    (``/readyz`` answers 200 once they have)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ladder is None:
            app.state.ladder = DecoderLadder.load(settings.decoder)
        log.info("receiver ready: %s", describe(app.state.ladder))
        yield

    app = FastAPI(
        title="latentwire receiver",
        version=latentwire.__version__,
        description="Decodes codes back into 28×28 digit PNGs. Holds the decoder halves only.",
        lifespan=lifespan,
    )
    app.state.ladder = ladder
    app.dependency_overrides[get_settings] = lambda: settings
    install_error_handlers(app)
    app.include_router(health_router(_ready_model))
    app.include_router(router)
    return app


def _ready_model(request: Request) -> str | None:
    ladder: DecoderLadder | None = request.app.state.ladder
    return None if ladder is None else ladder.levels()[0].model_id


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-receiver", description="Serve POST /decode (codes → PNG digits)."
    )
    p.add_argument("--host", help="bind address (env LATENTWIRE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env LATENTWIRE_PORT, default 8002)")
    p.add_argument(
        "--decoder", type=Path, help="ladder or checkpoint directory, or file (env LATENTWIRE_DECODER)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = get_settings().model_copy(update=overrides)
    try:  # load before binding the port: a bad checkpoint fails fast with a clear message
        ladder = DecoderLadder.load(settings.decoder)
    except LatentwireError as exc:
        log.error("cannot load the decoder: %s (%s)", exc, exc.hint)
        return 2
    uvicorn.run(create_app(settings, ladder=ladder), host=settings.host, port=settings.port, log_level="info")
    return 0


def run() -> None:
    sys.exit(main())
