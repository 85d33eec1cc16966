"""latentwire: the command-line client.

    latentwire encode digit.png other.jpg -o codes/ --quality 2   # writes codes/digit.lw, codes/other.lw
    latentwire decode codes/*.lw -o out/ --scale 4                # writes out/digit.png, …
    latentwire roundtrip digit.png --quality 1                    # prints code bytes and PSNR

Service URLs: --sender-url / --receiver-url, or LATENTWIRE_SENDER_URL / LATENTWIRE_RECEIVER_URL
(defaults http://127.0.0.1:8001 and http://127.0.0.1:8002). A failure prints the service's error
(or why no answer came back) on stderr and exits 1, without a traceback; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from latentwire.errors import LatentwireError
from latentwire.preprocess import load_digit, psnr
from latentwire_client.client import LatentwireClient, ServiceConnectionError, ServiceError

CODE_SUFFIX = ".lw"

_EPILOG = """\
examples:
  latentwire encode digit.png other.jpg -o codes/ --quality 2
  latentwire encode noisy.png --denoise -o codes/
  latentwire decode codes/*.lw -o out/ --scale 4
  latentwire roundtrip digit.png --quality 1

A failure prints the service's error (status, code, detail, hint), or why no answer came back,
and exits 1. Every call is idempotent: it is tried again after a connection error and after a
503 with Retry-After (--retries times, default 2; 0 disables), never after a 4xx.
"""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _add_encode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quality",
        type=_int_at_least(0),
        metavar="LEVEL",
        help="quality level: 1 (smallest codes) … 6 (best quality), 0 the tutorial's 8-bit model "
        "(default: the sender's default level, 4 in the shipped ladder; GET /v1/model lists them)",
    )
    parser.add_argument(
        "--denoise",
        action="store_true",
        help="use the denoising model (level 3): for a noisy image, the code of the clean digit",
    )
    parser.add_argument(
        "--no-preprocess",
        action="store_true",
        help="send the pixels as they are, without the MNIST normalization; the image must be 28×28",
    )


def _add_connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The service options; a subcommand takes them too (``latentwire encode x.png --retries 0``)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--sender-url",
        metavar="URL",
        default=default(None),
        help="the sender (default: $LATENTWIRE_SENDER_URL or http://127.0.0.1:8001)",
    )
    parser.add_argument(
        "--receiver-url",
        metavar="URL",
        default=default(None),
        help="the receiver (default: $LATENTWIRE_RECEIVER_URL or http://127.0.0.1:8002)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(30.0),
        metavar="S",
        help="seconds per request and try (default: 30)",
    )
    parser.add_argument(
        "--retries",
        type=_int_at_least(0),
        default=default(2),
        metavar="N",
        help="tries again after a connection error or a 503 with Retry-After, at most N times, "
        "with exponential backoff (default: 2; 0 disables)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire",
        description="Send digits through the latentwire services.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(p, defaults=True)
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`latentwire COMMAND --help` for its options"
    )
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, defaults=False)

    def command(
        name: str, summary: str, description: str, inputs: str, about: str
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[common], help=summary, description=description)
        parser.add_argument(inputs, nargs="+", type=Path, help=about)
        return parser

    def add_out_dir(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-o", "--out", type=Path, default=Path("."), help="output directory (default: .)")

    enc = command(
        "encode",
        "images → code files (<stem>.lw)",
        "Encode images into code files.",
        "images",
        "image files (PNG, JPEG, BMP, GIF, TIFF, WebP)",
    )
    add_out_dir(enc)
    _add_encode_options(enc)

    dec = command(
        "decode",
        "code files → PNG images (<stem>.png)",
        "Decode code files into 28×28 grayscale PNGs (the code names its own model).",
        "codes",
        "code files (.lw), as `encode` writes them",
    )
    add_out_dir(dec)
    dec.add_argument(
        "-s",
        "--scale",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="nearest-neighbour upscale for viewing: 28·N pixels square (default: 1; the receiver's "
        "limit is 16)",
    )

    rt = command(
        "roundtrip",
        "encode then decode; print code bytes and PSNR",
        "Encode each image, decode its code, and print the code's size and the PSNR of the "
        "reconstruction against the (normalized) input.",
        "images",
        "image files",
    )
    rt.add_argument("-o", "--out", type=Path, help="also save the reconstructions here (<stem>.png)")
    _add_encode_options(rt)
    return p


def _encode(client: LatentwireClient, args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        code = client.encode(
            path.read_bytes(), quality=args.quality, denoise=args.denoise, preprocess=not args.no_preprocess
        )
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
        code = client.encode(data, quality=args.quality, denoise=args.denoise, preprocess=preprocess)
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
            sender_url=args.sender_url,
            receiver_url=args.receiver_url,
            timeout=args.timeout,
            retries=args.retries,
        ) as client:
            commands[args.command](client, args)
    except ServiceConnectionError as exc:
        print(f"latentwire: cannot reach the service: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        verdict = "refused" if 400 <= exc.status < 500 else "failed"
        print(f"latentwire: the service {verdict}: {exc}", file=sys.stderr)
        return 1
    except (OSError, LatentwireError) as exc:
        print(f"latentwire: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("latentwire: interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
