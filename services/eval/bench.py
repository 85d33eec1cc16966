"""Throughput of the codec, as ratios to PNG (Pillow) measured in the same run.

    python -m latentwire_eval.bench                 # 2,000 MNIST test digits, the shipped ladder
    python -m latentwire_eval.bench --images 500 --repeat 5

Absolute images/s depend on the machine and on what else runs on it; the ratio to PNG encoding
and decoding of the same digits in the same process is the figure to compare between runs.
Timings are the best of ``--repeat`` runs (the least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from latentwire.data import load_mnist
from latentwire.ladder import DecoderLadder, EncoderLadder

log = logging.getLogger("latentwire.bench")
T = TypeVar("T")


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def png_round_trip(images: np.ndarray) -> tuple[Callable[[], object], Callable[[], object]]:
    def encode() -> list[bytes]:
        out = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out

    files = encode()
    return encode, lambda: [np.asarray(Image.open(io.BytesIO(f))) for f in files]


def _each(work: Callable[[T], object], items: Sequence[T]) -> None:
    for item in items:
        work(item)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentwire-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=None, help="ladder directory (default: the shipped one)")
    p.add_argument("--images", type=int, default=2000, help="MNIST test digits per run")
    p.add_argument("--batch", type=int, default=500, help="images per compress/decompress call")
    p.add_argument("--repeat", type=int, default=3)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    images = load_mnist("test").images[: args.images]
    senders, receivers = EncoderLadder.load(args.models), DecoderLadder.load(args.models)
    png_encode, png_decode = png_round_trip(images)
    png = (best_seconds(png_encode, args.repeat), best_seconds(png_decode, args.repeat))
    rows = [("PNG (Pillow)", len(images) / png[0], len(images) / png[1], 1.0, 1.0)]
    chunks = [images[i : i + args.batch] for i in range(0, len(images), args.batch)]
    for model in senders.levels():
        codes = [c for chunk in chunks for c in model.compress(chunk)]
        coded = [codes[i : i + args.batch] for i in range(0, len(codes), args.batch)]
        enc = best_seconds(partial(_each, model.compress, chunks), args.repeat)
        dec = best_seconds(partial(_each, receivers.decompress, coded), args.repeat)
        name = f"q{model.level}{'-denoise' if model.denoise else ''} (v{model.format_version})"
        rows.append((name, len(images) / enc, len(images) / dec, png[0] / enc, png[1] / dec))
    print(f"{len(images)} digits, batches of {args.batch}, best of {args.repeat}")
    print(f"{'codec':<22} {'encode img/s':>13} {'decode img/s':>13} {'enc × PNG':>10} {'dec × PNG':>10}")
    for name, enc_rate, dec_rate, enc_ratio, dec_ratio in rows:
        print(f"{name:<22} {enc_rate:>13.0f} {dec_rate:>13.0f} {enc_ratio:>10.2f} {dec_ratio:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
