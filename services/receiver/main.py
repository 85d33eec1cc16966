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
from latentwire.preprocess import png_bytes
from latentwire_http.app import create_service_app, serve
from latentwire_http.batching import MicroBatcher
from latentwire_receiver.deps import DecodeBatcher, DecodeItem
from latentwire_receiver.routes import build_router
from latentwire_receiver.settings import ReceiverSettings


def decode_batch(items: list[DecodeItem]) -> list[bytes | Exception]:
    """The worker's job: entropy-decode each payload, one decoder pass per model, then the PNGs."""
    images = DecoderLadder.decompress_each([(item.model, item.payload) for item in items])
    return [
        image if isinstance(image, Exception) else png_bytes(image, scale=item.scale)
        for image, item in zip(images, items, strict=True)
    ]


def make_batcher(settings: ReceiverSettings) -> DecodeBatcher:
    return MicroBatcher.from_settings(decode_batch, settings, name="decoder")


def create_app(settings: ReceiverSettings | None = None, *, ladder: DecoderLadder | None = None) -> FastAPI:
    """The ASGI app; without ``ladder`` the decoders named by ``settings`` load at startup."""
    resolved = settings or ReceiverSettings()
    return create_service_app(
        title="latentwire receiver",
        description="Decodes codes back into 28×28 digit PNGs. Holds decoder halves only.",
        routers=[build_router(resolved)],
        settings=resolved,
        ladder=ladder,
        load=lambda: DecoderLadder.load(resolved.decoder),
        batcher=lambda _: make_batcher(resolved),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-receiver", description="Serve POST /decode (codes → PNG digits)."
    )
    p.add_argument(
        "--host", help="bind address (env LATENTWIRE_RECEIVER_HOST or LATENTWIRE_HOST, default 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=int, help="port (env LATENTWIRE_RECEIVER_PORT or LATENTWIRE_PORT, default 8002)"
    )
    p.add_argument(
        "--decoder", type=Path, help="ladder or checkpoint directory, or file (env LATENTWIRE_DECODER)"
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines: readable text or one JSON object per line "
        "(env LATENTWIRE_RECEIVER_LOG_FORMAT or LATENTWIRE_LOG_FORMAT, default text)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ReceiverSettings(**{k: v for k, v in vars(args).items() if v is not None})
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return serve(
        half="decoder",
        settings=settings,
        load=lambda: DecoderLadder.load(settings.decoder),
        app=lambda ladder: create_app(settings, ladder=ladder),  # type: ignore[arg-type]
    )


def run() -> None:
    sys.exit(main())
