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

from latentwire.ladder import EncoderLadder, compress_each
from latentwire_demo import STATIC_DIR
from latentwire_http.app import create_service_app, serve
from latentwire_http.batching import MicroBatcher
from latentwire_sender.deps import EncodeBatcher, EncodeItem
from latentwire_sender.routes import build_router, startup
from latentwire_sender.settings import SenderSettings

#: Where the sender serves the browser demo (``demo`` setting); the gateway serves it at /.
DEMO_PATH = "/demo"


def load_ladder(settings: SenderSettings) -> EncoderLadder:
    return EncoderLadder.load(settings.encoder, default_quality=settings.default_quality)


def encode_batch(items: list[EncodeItem]) -> list[bytes | Exception]:
    """The worker's job: one encoder pass per model over the batch, then the entropy coder."""
    return list(compress_each(items))


def make_batcher(settings: SenderSettings) -> EncodeBatcher:
    return MicroBatcher.from_settings(encode_batch, settings, name="encoder")


def create_app(settings: SenderSettings | None = None, *, ladder: EncoderLadder | None = None) -> FastAPI:
    """The ASGI app; without ``ladder`` the encoders named by ``settings`` load at startup."""
    resolved = settings or SenderSettings()
    return create_service_app(
        title="latentwire sender",
        description="Encodes digit images into compact codes. Holds encoder halves only.",
        routers=[build_router(resolved, ladder)],
        settings=resolved,
        ladder=ladder,
        load=lambda: load_ladder(resolved),
        batcher=lambda _: make_batcher(resolved),
        on_startup=startup,
        static={DEMO_PATH: STATIC_DIR} if resolved.demo else None,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentwire-sender", description="Serve POST /encode (images → codes).")
    p.add_argument(
        "--host", help="bind address (env LATENTWIRE_SENDER_HOST or LATENTWIRE_HOST, default 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=int, help="port (env LATENTWIRE_SENDER_PORT or LATENTWIRE_PORT, default 8001)"
    )
    p.add_argument(
        "--encoder", type=Path, help="ladder or checkpoint directory, or file (env LATENTWIRE_ENCODER)"
    )
    p.add_argument(
        "--default-quality", type=int, help="level without ?quality= (env LATENTWIRE_DEFAULT_QUALITY)"
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines: readable text or one JSON object per line "
        "(env LATENTWIRE_SENDER_LOG_FORMAT or LATENTWIRE_LOG_FORMAT, default text)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if v is not None}
    settings = SenderSettings(**flags)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return serve(
        half="encoder",
        settings=settings,
        load=lambda: load_ladder(settings),
        app=lambda ladder: create_app(settings, ladder=ladder),  # type: ignore[arg-type]
    )


def run() -> None:
    sys.exit(main())
