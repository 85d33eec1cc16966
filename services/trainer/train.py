"""latentwire-train: fit an autoencoder on MNIST and write split checkpoints.

Run it::

    latentwire-train --out runs/seed                       # the tutorial's model: 50 epochs, BCE, v1 codes
    latentwire-train --out runs/denoise --noise-sigma 0.4  # the tutorial's denoiser: noisy in, clean out
    latentwire-train --preset dense --loss mse --lmbda 30 --level 3 --out runs/q3   # one rung of the ladder
    latentwire-train --preset tiny --epochs 1 --limit-train 2000 --out /tmp/tiny    # a smoke test

The shipped ladder is made by ``latentwire-train-ladder`` (see latentwire_trainer/ladder.py), and
the shipped seed model by::

    latentwire-train --preset seed --epochs 10 --seed 0 --out shared/latentwire/pretrained/seed

Two kinds of preset: ``seed`` / ``tiny`` minimize the reconstruction loss alone and quantize the
latent to 8 bits afterwards; ``dense`` / ``dense-tiny`` learn an entropy model jointly and
minimize rate + λ·distortion (bits per image + λ · per-image sum of the loss over pixels).

Reads top to bottom: options → device → data → model → optimizer → evaluate → loop → export.
Writes ``encoder.safetensors``, ``decoder.safetensors`` and ``reconstructions.png`` into --out.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import latentwire
from latentwire import arithmetic
from latentwire.checkpoint import save_checkpoint
from latentwire.codec import FACTORIZED, Compressor, Decompressor, fit_quantizer, to_tensor
from latentwire.data import dataset_checksum, load_mnist
from latentwire.entropy import FactorizedPrior
from latentwire.errors import LatentwireError
from latentwire.nets import PRESETS, Decoder, Encoder, get_preset
from latentwire.preprocess import psnr

log = logging.getLogger("latentwire.train")

# -----------------------------------------------------------------------------
# options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-train", description="Train a latentwire autoencoder on MNIST."
    )
    p.add_argument(
        "--preset", default="seed", choices=sorted(PRESETS), help="architecture (seed: the tutorial's)"
    )
    p.add_argument("--epochs", type=int, default=50, help="passes over the training set (the tutorial's 50)")
    p.add_argument("--batch-size", type=int, default=128, help="the tutorial's 128")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (Keras' default)")
    p.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="constant (the tutorial's) or cosine decay to 0 over the run (better final models)",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, data and device → same metrics")
    p.add_argument(
        "--loss", choices=("bce", "mse"), default="bce", help="the tutorial's cross-entropy, or MSE"
    )
    p.add_argument(
        "--lmbda",
        type=float,
        default=30.0,
        help="dense presets: λ in bits + λ·distortion (larger: bigger codes, better quality)",
    )
    p.add_argument(
        "--level", type=int, default=3, help="dense presets: the quality level the code carries (1-15)"
    )
    p.add_argument(
        "--noise-sigma",
        type=float,
        default=0.0,
        help="denoising: Gaussian σ added to inputs, clipped to [0, 1] (the tutorial's 0.4); 0 = none",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="MNIST directory (default: $LATENTWIRE_DATA_DIR)"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="directory for the two checkpoint halves and the figure"
    )
    p.add_argument(
        "--limit-train", type=int, default=0, help="use only the first N training images (0 = all)"
    )
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on the first N test images (0 = all)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -----------------------------------------------------------------------------
# data


class Batch(NamedTuple):
    inputs: torch.Tensor  # (B, 1, 28, 28) what the encoder sees (noisy when denoising)
    targets: torch.Tensor  # (B, 1, 28, 28) what the decoder must produce


def add_noise(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """The tutorial's gen_noise: Gaussian noise of std ``sigma``, clipped to [0, 1]."""
    if sigma <= 0:
        return images
    noise = torch.randn(images.shape, generator=generator, device=images.device) * sigma
    return (images + noise).clamp(0.0, 1.0)


def noisy_pixels(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """add_noise for uint8 images, as the evaluation feeds the denoiser."""
    rng = np.random.default_rng(seed)
    noisy = images / 255.0 + rng.normal(0.0, sigma, images.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)


def batches(
    images: torch.Tensor, *, batch_size: int, sigma: float, generator: torch.Generator, shuffle: bool
) -> Iterator[Batch]:
    order = torch.randperm(len(images), generator=generator, device=images.device) if shuffle else None
    for start in range(0, len(images), batch_size):
        clean = (
            images[order[start : start + batch_size]]
            if order is not None
            else images[start : start + batch_size]
        )
        yield Batch(add_noise(clean, sigma, generator), clean)


# -----------------------------------------------------------------------------
# model and loss


class Model(NamedTuple):
    encoder: Encoder
    decoder: Decoder
    prior: FactorizedPrior | None  # the entropy model, for rate-trained (dense) presets


def distortion(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image sum over pixels of the reconstruction loss: (B,)."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy(output, target, reduction="none")
    else:
        per_pixel = (output - target) ** 2
    return per_pixel.flatten(1).sum(dim=1)


def forward(
    model: Model, batch: Batch, *, loss: str, lmbda: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, output images, bits per image); bits are 0 for presets without a prior."""
    latents = model.encoder(batch.inputs)
    if model.prior is None:
        output = model.decoder(latents)
        bits = torch.zeros(len(output), device=output.device)
        return distortion(loss, output, batch.targets).mean() / (28 * 28), output, bits
    rounded, bits = model.prior(latents)  # decoder sees rounded latents; rate on noisy ones
    output = model.decoder(rounded)
    return (bits + lmbda * distortion(loss, output, batch.targets)).mean(), output, bits


# -----------------------------------------------------------------------------
# evaluate


@torch.no_grad()
def evaluate(
    model: Model, images: torch.Tensor, *, loss: str, lmbda: float, sigma: float
) -> dict[str, float]:
    """Objective, estimated bits and PSNR (of the mean MSE, on uint8 pixels) over ``images``."""
    for module in model:
        if module is not None:
            module.eval()
    generator = torch.Generator(device=images.device).manual_seed(1234)  # same noise every epoch
    total, bits_sum, squared, count = 0.0, 0.0, 0.0, 0
    for batch in batches(images, batch_size=1000, sigma=sigma, generator=generator, shuffle=False):
        objective, output, bits = forward(model, batch, loss=loss, lmbda=lmbda)
        total += float(objective) * len(output)
        bits_sum += float(bits.sum())
        squared += float(((torch.round(output * 255) - torch.round(batch.targets * 255)) ** 2).sum())
        count += len(output)
    for module in model:
        if module is not None:
            module.train()
    mse = squared / (count * 28 * 28)
    return {
        "objective": total / count,
        "bits": bits_sum / count,
        "psnr": 10 * math.log10(255**2 / mse) if mse > 0 else math.inf,
    }


def codec_metrics(out: Path, test_images: np.ndarray, *, sigma: float, seed: int) -> dict[str, float]:
    """The real round trip through the exported files: code bytes, information content and PSNR."""
    compressor, decompressor = Compressor.from_checkpoint(out), Decompressor.from_checkpoint(out)
    inputs = noisy_pixels(test_images, sigma, seed) if sigma > 0 else test_images
    codes: list[bytes] = []
    info_bits = 0.0
    for start in range(0, len(inputs), 1000):
        chunk = inputs[start : start + 1000]
        codes += compressor.compress(chunk)
        if compressor.tables is not None:
            rows = compressor.tables.rows()
            info_bits += sum(arithmetic.information_bits(s.tolist(), rows) for s in compressor.symbols(chunk))
    decoded = np.concatenate(
        [decompressor.decompress(codes[s : s + 1000]) for s in range(0, len(codes), 1000)]
    )
    framing = 2 if compressor.tables is not None else 15
    metrics = {
        "psnr": psnr(test_images, decoded),
        "code_bytes": float(np.mean([len(c) for c in codes])),
        "payload_bytes": float(np.mean([len(c) - framing for c in codes])),
        "test_images": float(len(test_images)),
    }
    if compressor.tables is not None:
        metrics["information_bits"] = info_bits / len(codes)
    if sigma > 0:
        metrics["psnr_noisy_input"] = psnr(test_images, inputs)
    return metrics


# -----------------------------------------------------------------------------
# export


def save_figure(path: Path, rows: list[np.ndarray]) -> None:
    """Originals over reconstructions (and noisy inputs between them), like the tutorial's display()."""
    gap, n = 2, rows[0].shape[0]
    sheet = np.full((len(rows) * (28 + gap) - gap, n * (28 + gap) - gap), 255, np.uint8)
    for r, row in enumerate(rows):
        for i, image in enumerate(row):
            sheet[r * (28 + gap) : r * (28 + gap) + 28, i * (28 + gap) : i * (28 + gap) + 28] = image
    size = (sheet.shape[1] * 3, sheet.shape[0] * 3)
    Image.fromarray(sheet).resize(size, Image.Resampling.NEAREST).save(path)


def library_versions() -> dict[str, str]:
    return {
        "latentwire": latentwire.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def export(model: Model, args: argparse.Namespace, train_images: torch.Tensor, **meta: object) -> None:
    """Freeze the codec (8-bit range, or the integer CDF tables) and write both halves."""
    with torch.no_grad():
        if model.prior is None:
            sample = train_images[:10_000]
            latents = torch.cat([model.encoder(sample[i : i + 1000]) for i in range(0, len(sample), 1000)])
            codec, tables, level = fit_quantizer(latents.cpu()).to_dict(), None, 0
        else:
            codec, tables, level = dict(FACTORIZED), model.prior.cpu().freeze().to_tensors(), args.level
    model.encoder.cpu(), model.decoder.cpu()
    save_checkpoint(
        args.out,
        encoder=model.encoder,
        decoder=model.decoder,
        codec=codec,
        tables=tables,
        level=level,
        denoise=args.noise_sigma > 0,
        **meta,  # type: ignore[arg-type]
    )


# -----------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    command = shlex.join(["latentwire-train", *(sys.argv[1:] if argv is None else argv)])

    # device and determinism
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)

    # data
    try:
        train_split = load_mnist("train", data_dir=args.data_dir)
        test_split = load_mnist("test", data_dir=args.data_dir)
        checksum = dataset_checksum(args.data_dir)
    except LatentwireError as exc:
        log.error("error: %s", exc)
        return 1
    train_np = train_split.images[: args.limit_train or None]
    test_np = test_split.images[: args.limit_test or None]
    train_images, test_images = to_tensor(train_np).to(device), to_tensor(test_np).to(device)
    log.info(
        "data: %d train, %d test images; device %s; preset %s",
        len(train_np),
        len(test_np),
        device,
        preset.name,
    )

    # model and optimizer
    prior = FactorizedPrior(preset.latent_dims).to(device) if preset.family == "dense" else None
    model = Model(Encoder(preset).to(device), Decoder(preset).to(device), prior)
    params = [p for module in model if module is not None for p in module.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    steps = args.epochs * math.ceil(len(train_images) / args.batch_size)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
        if args.schedule == "cosine"
        else None
    )
    log.info("parameters: %d", sum(p.numel() for p in params))

    # training loop
    generator = torch.Generator(device=device).manual_seed(args.seed)
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        stream = batches(
            train_images,
            batch_size=args.batch_size,
            sigma=args.noise_sigma,
            generator=generator,
            shuffle=True,
        )
        total = math.ceil(len(train_images) / args.batch_size)
        running = 0.0
        with tqdm(stream, total=total, desc=f"epoch {epoch}/{args.epochs}", leave=False, disable=None) as bar:
            for step, batch in enumerate(bar):
                objective, _, bits = forward(model, batch, loss=args.loss, lmbda=args.lmbda)
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                value = objective.item()
                running = value if step == 0 else 0.95 * running + 0.05 * value
                bar.set_postfix(loss=f"{running:.4f}", bits=f"{bits.mean().item():.1f}")
        val = evaluate(model, test_images, loss=args.loss, lmbda=args.lmbda, sigma=args.noise_sigma)
        log.info(
            "epoch %d: train %.4f, test %.4f, ~%.1f bits/image, test PSNR %.2f dB (%.0f s)",
            epoch, running, val["objective"], val["bits"], val["psnr"], time.perf_counter() - started,
        )  # fmt: skip

    # export: freeze the codec, write both halves, then measure the real codec through the files
    training = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "verbose")
    }
    training["device"] = str(device)
    training["seconds"] = round(time.perf_counter() - started, 1)
    meta = {
        "training": training,
        "data_checksum": checksum,
        "versions": library_versions(),
        "command": command,
    }
    export(model, args, train_images, **meta)
    metrics = codec_metrics(args.out, test_np, sigma=args.noise_sigma, seed=args.seed)
    export(model, args, train_images, metrics=metrics, **meta)
    log.info(
        "codec on %d test images: %.2f bytes/code, PSNR %.2f dB",
        len(test_np),
        metrics["code_bytes"],
        metrics["psnr"],
    )

    # figure: originals over reconstructions
    shown = test_np[:10]
    rows = [shown]
    if args.noise_sigma > 0:
        shown = noisy_pixels(shown, args.noise_sigma, args.seed)
        rows.append(shown)
    compressor, decompressor = Compressor.from_checkpoint(args.out), Decompressor.from_checkpoint(args.out)
    rows.append(decompressor.decompress(compressor.compress(shown)))
    save_figure(args.out / "reconstructions.png", rows)
    log.info(
        "wrote %s",
        ", ".join(
            str(args.out / f) for f in ("encoder.safetensors", "decoder.safetensors", "reconstructions.png")
        ),
    )
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
