"""The sender service: loads the encoder halves only and turns images into codes.

latentwire-sender                       # 127.0.0.1:8001, the shipped ladder
latentwire-sender --port 9001 --encoder runs/q3 --default-quality 3
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from latentwire.ladder import EncoderLadder
from latentwire.web import create_service_app, serve
from latentwire_sender.routes import router
from latentwire_sender.settings import SenderSettings, get_settings


def load_ladder(settings: SenderSettings) -> EncoderLadder:
    return EncoderLadder.load(settings.encoder, default_quality=settings.default_quality)


def create_app(settings: SenderSettings | None = None, *, ladder: EncoderLadder | None = None) -> FastAPI:
    """The ASGI app; without ``ladder`` the encoders named by ``settings`` load at startup."""
    resolved = settings or get_settings()
    return create_service_app(
        title="latentwire sender",
        description="Encodes digit images into compact codes. Holds encoder halves only.",
        router=router,
        ladder=ladder,
        load=lambda: load_ladder(resolved),
        overrides={get_settings: lambda: resolved},
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentwire-sender", description="Serve POST /encode (images → codes).")
    p.add_argument("--host", help="bind address (env LATENTWIRE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env LATENTWIRE_PORT, default 8001)")
    p.add_argument(
        "--encoder", type=Path, help="ladder or checkpoint directory, or file (env LATENTWIRE_ENCODER)"
    )
    p.add_argument(
        "--default-quality", type=int, help="level without ?quality= (env LATENTWIRE_DEFAULT_QUALITY)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings().model_copy(update={k: v for k, v in vars(args).items() if v is not None})
    return serve(
        half="encoder",
        load=lambda: load_ladder(settings),
        app=lambda ladder: create_app(settings, ladder=ladder),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
    )


def run() -> None:
    sys.exit(main())
