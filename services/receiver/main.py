"""The receiver service: loads the decoder halves only and turns codes back into digits.

latentwire-receiver                       # 127.0.0.1:8002, the shipped ladder
latentwire-receiver --port 9002 --decoder runs/q3
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from latentwire.ladder import DecoderLadder
from latentwire.web import create_service_app, serve
from latentwire_receiver.routes import router
from latentwire_receiver.settings import ReceiverSettings, get_settings


def create_app(settings: ReceiverSettings | None = None, *, ladder: DecoderLadder | None = None) -> FastAPI:
    """The ASGI app; without ``ladder`` the decoders named by ``settings`` load at startup."""
    resolved = settings or get_settings()
    return create_service_app(
        title="latentwire receiver",
        description="Decodes codes back into 28×28 digit PNGs. Holds decoder halves only.",
        router=router,
        ladder=ladder,
        load=lambda: DecoderLadder.load(resolved.decoder),
        overrides={get_settings: lambda: resolved},
    )


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
    settings = get_settings().model_copy(update={k: v for k, v in vars(args).items() if v is not None})
    return serve(
        half="decoder",
        load=lambda: DecoderLadder.load(settings.decoder),
        app=lambda ladder: create_app(settings, ladder=ladder),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
    )


def run() -> None:
    sys.exit(main())
