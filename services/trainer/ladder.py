"""latentwire-train-ladder: retrain the whole shipped quality ladder, reproducibly, in one command.

    latentwire-train-ladder                                   # into shared/latentwire/pretrained
    latentwire-train-ladder --out runs/ladder --device cuda   # elsewhere, on a GPU
    latentwire-train-ladder --only q3-denoise                   # some rungs only

Each rung is one ``latentwire-train`` run with the options below (the same seed each time), so a
rung can also be retrained alone with the command recorded in its checkpoint metadata. On this
project's reference machine (2 CPU cores, no GPU) the whole ladder takes about 3.8 hours, measured
per rung with one other training run beside it (upper bounds), except q2, which ran alone on both
cores (--threads 2): q1 21 min, q2 73 min, q3 24 min, q4 23 min, q5 24 min, q6 52 min, the denoiser 4.7 min,
the seed network 6-10 min. With ``--device cuda`` the same commands run on a GPU (not measured
here: no GPU was lent).
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


# One network per level (single-rate), each with a conditional entropy model, where the ladder
# before issue #10 shared one network among levels 1-5 and coded each value independently; what
# each change bought is measured in docs/rd.md. λ weighs distortion against rate (bits + λ·SSE
# on [0, 1] pixels). The warm-up keeps a run from dying in its first epoch (docs/rd.md).
_COMMON = "--loss mse --schedule cosine --warmup 500 --prior conditional --groups 8"
RUNGS: tuple[Rung, ...] = (
    # Level 1 (issue #10, second round): the decoder trained on noisy latents, which overfits
    # less than straight-through over a long run (0.45 dB at equal rate), a wider entropy model.
    Rung(
        "q1",
        "q1",
        f"{_COMMON} --prior-hidden 512 --preset dense-32 --lmbda 3.3 --level 1 --epochs 35 --lr 2e-3 "
        "--quantization noise --finetune-decoder 2",
    ),
    # Level 2 (issue #10, third to eighth rounds): the same with each training digit moved by up
    # to a pixel each way (noise alone still overfit: 0.70 dB train/test, this 0.14 dB), at λ 14.5
    # for 240 epochs (every 50 more epochs has bought ~0.1 dB here), then the entropy model refit
    # alone on the digits as they are (1.1% smaller codes). It replaced the fourth to sixth
    # rounds' models of level 2 (--retires: receivers refuse those models' codes by name).
    Rung(
        "q2",
        "q2",
        f"{_COMMON} --prior-hidden 512 --preset dense-32 --lmbda 14.5 --level 2 --epochs 240 --lr 2e-3 "
        "--quantization noise --finetune-decoder 2 --finetune-prior 2 --shift 1 "
        "--retires 044e45d65f51a609 --retires dadfd1e87452b8ff --retires 4c32fce8ca165702",
    ),
    # Levels 3-5 (issue #10, fourth round): level 1's recipe with level 2's shifted digits, at
    # λ 30, 55 and 120, 40 epochs each. Levels 4-5 were the network shared by five levels before
    # issue #10 (factorized priors): one 32-latent network each now, smaller codes at equal PSNR.
    *(
        Rung(
            f"q{level}",
            f"q{level}",
            f"{_COMMON} --prior-hidden 512 --preset dense-32 --lmbda {lmbda} --level {level} --epochs 40 "
            "--lr 2e-3 --quantization noise --finetune-decoder 2 --shift 1",
        )
        for level, lmbda in ((3, 30), (4, 55), (5, 120))
    ),
    # Level 6 (issue #10, tenth and eleventh rounds): a 7×7 latent map of 2 channels (98 values, no
    # dense layer) in place of the 32-value vector, so that strokes stay where they are, with a
    # bottleneck residual block after each strided convolution and before each transposed one:
    # 28.37 dB at 23.8 B, where the vector nets stay below 27 dB; 48 epochs, where 40 gave 28.26 dB
    # (docs/rd.md §14-15). It replaced the tenth round's q6 (a plain 4-channel map, 29.26 dB at
    # 31.1 B), whose codes are refused.
    Rung(
        "q6",
        "q6",
        f"{_COMMON} --prior-hidden 512 --preset spatial-residual-2-bottleneck --lmbda 125 --level 6 "
        "--epochs 48 --lr 2e-3 --quantization noise --finetune-decoder 2 --finetune-prior 2 --shift 1 "
        "--output-bias mean --retires 15b62012b5540c10",
    ),
    # The denoiser: level 3's network fine-tuned on the tutorial's noise (σ 0.4), clean targets.
    Rung(
        "q3-denoise",
        "q3-denoise",
        f"{_COMMON} --prior-hidden 512 --preset dense-32 --lmbda 30 --level 3 --noise-sigma 0.4 "
        "--init-from {out}/q3 --epochs 6 --lr 1e-3",
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
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
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
        if args.threads:
            options += ["--threads", str(args.threads)]
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
