"""latentwire-train-ladder: retrain the whole shipped quality ladder, reproducibly, in one command.

    latentwire-train-ladder                                   # into shared/latentwire/pretrained
    latentwire-train-ladder --out runs/ladder --device cuda   # elsewhere, on a GPU
    latentwire-train-ladder --only q3-denoise                   # some rungs only

Each rung is one ``latentwire-train`` run with the options below (the same seed each time), so a
rung can also be retrained alone with the command recorded in its checkpoint metadata. On this
project's reference machine (2 CPU cores, no GPU) the whole ladder takes about 45 minutes:
levels 1-5 32 min, the denoiser 2.5 min, the seed network 6-10 min (about 35 s an epoch).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from latentwire.checkpoint import DEFAULT_CHECKPOINT_DIR
from latentwire_trainer import train

log = logging.getLogger("latentwire.train.ladder")


class Rung(NamedTuple):
    name: str  # what --only calls it
    out: str  # where it writes, under --out
    options: str  # latentwire-train options ({out} is --out)


# λ weighs distortion against rate (bits + λ·SSE on [0, 1] pixels): about ×3.3 from level to level.
LAMBDAS = "3,8,22,70,250"
_DENSE = "--preset dense --loss mse --schedule cosine"
RUNGS: tuple[Rung, ...] = (
    # Levels 1-5 in one run: one network with per-level gains and entropy models (see train.py).
    Rung("q1-q5", ".", f"{_DENSE} --lmbda {LAMBDAS} --level 1 --epochs 50 --lr 2e-3"),
    # The denoiser: level 3's network fine-tuned on the tutorial's noise (σ 0.4), clean targets.
    Rung(
        "q3-denoise",
        "q3-denoise",
        f"{_DENSE} --lmbda 22 --level 3 --noise-sigma 0.4 --init-from {{out}}/q3 --epochs 8 --lr 1e-3",
    ),
    # The tutorial's own network (code format v1), kept for old codes and for comparison.
    Rung("seed", "seed", "--preset seed --epochs 10"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-train-ladder", description="Retrain the shipped quality ladder."
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_CHECKPOINT_DIR, help="ladder directory (one subdirectory a rung)"
    )
    p.add_argument("--only", nargs="+", choices=[r.name for r in RUNGS], help="train these rungs only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=Path, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    for rung in RUNGS:
        if args.only and rung.name not in args.only:
            continue
        options = rung.options.format(out=args.out).split()
        options += ["--seed", str(args.seed), "--device", args.device, "--out", str(args.out / rung.out)]
        if args.data_dir:
            options += ["--data-dir", str(args.data_dir)]
        log.info("== %s: latentwire-train %s", rung.name, " ".join(options))
        status = train.main(options)
        if status:
            return status
    log.info("ladder done in %.1f min", (time.perf_counter() - started) / 60)
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
