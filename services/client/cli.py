"""latentwire: the command-line client.

    latentwire encode digit.png other.jpg -o codes/      # writes codes/digit.lw, codes/other.lw
    latentwire decode codes/*.lw -o out/ --scale 4       # writes out/digit.png, …
    latentwire roundtrip digit.png                       # prints code bytes and PSNR

Service URLs: --sender-url / --receiver-url, or LATENTWIRE_SENDER_URL / LATENTWIRE_RECEIVER_URL
(defaults http://127.0.0.1:8001 and http://127.0.0.1:8002).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from latentwire.errors import LatentwireError
from latentwire.preprocess import load_digit, psnr
from latentwire_client.client import LatentwireClient, ServiceError

CODE_SUFFIX = ".lw"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentwire", description="Send digits through the latentwire services.")
    p.add_argument("--sender-url", help="default: $LATENTWIRE_SENDER_URL or http://127.0.0.1:8001")
    p.add_argument("--receiver-url", help="default: $LATENTWIRE_RECEIVER_URL or http://127.0.0.1:8002")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    sub = p.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="images → code files (<stem>.lw)")
    enc.add_argument("images", nargs="+", type=Path)
    enc.add_argument("-o", "--out", type=Path, default=Path("."), help="output directory")
    enc.add_argument("--no-preprocess", action="store_true", help="send 28×28 pixels as they are")

    dec = sub.add_parser("decode", help="code files → PNG images (<stem>.png)")
    dec.add_argument("codes", nargs="+", type=Path)
    dec.add_argument("-o", "--out", type=Path, default=Path("."), help="output directory")
    dec.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscale for viewing")

    rt = sub.add_parser("roundtrip", help="encode then decode; print code bytes and PSNR")
    rt.add_argument("images", nargs="+", type=Path)
    rt.add_argument("-o", "--out", type=Path, help="also save the reconstructions here")
    rt.add_argument("--no-preprocess", action="store_true", help="send 28×28 pixels as they are")
    return p


def _encode(client: LatentwireClient, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        code = client.encode(path.read_bytes(), preprocess=not args.no_preprocess)
        (args.out / f"{path.stem}{CODE_SUFFIX}").write_bytes(code)
        print(f"{path} → {args.out / (path.stem + CODE_SUFFIX)} ({len(code)} bytes)")


def _decode(client: LatentwireClient, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.codes:
        png = client.decode(path.read_bytes(), scale=args.scale)
        (args.out / f"{path.stem}.png").write_bytes(png)
        print(f"{path} → {args.out / (path.stem + '.png')}")


def _roundtrip(client: LatentwireClient, args: argparse.Namespace) -> None:
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        data = path.read_bytes()
        preprocess = not args.no_preprocess
        code = client.encode(data, preprocess=preprocess)
        png = client.decode(code)
        # PSNR against what the sender encoded: the input after the same MNIST normalization.
        sent = load_digit(data, normalize=preprocess)
        received = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        print(f"{path}: {len(code)} bytes ({sent.size} pixels), PSNR {psnr(sent, received):.2f} dB")
        if args.out:
            (args.out / f"{path.stem}.png").write_bytes(png)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"encode": _encode, "decode": _decode, "roundtrip": _roundtrip}
    try:
        with LatentwireClient(
            sender_url=args.sender_url, receiver_url=args.receiver_url, timeout=args.timeout
        ) as client:
            commands[args.command](client, args)
    except ServiceError as exc:
        print(f"latentwire: the service refused: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"latentwire: cannot reach the service: {exc}", file=sys.stderr)
        return 1
    except (OSError, LatentwireError) as exc:
        print(f"latentwire: {exc}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
