"""latentwire-train: fit an autoencoder on MNIST and write split checkpoints.

Run it::

    latentwire-train --out runs/seed                       # the tutorial's model: 50 epochs, BCE, v1 codes
    latentwire-train --out runs/denoise --noise-sigma 0.4  # the tutorial's denoiser: noisy in, clean out
    latentwire-train --preset dense --loss mse --lmbda 30 --level 3 --out runs/q3   # a factorized prior
    latentwire-train --preset tiny --epochs 1 --limit-train 2000 --out /tmp/tiny    # a smoke test
    latentwire-train --preset dense-32 --loss mse --lmbda 3 --prior conditional --groups 8 --out runs/c1

The shipped ladder is made by ``latentwire-train-ladder`` (see latentwire_trainer/ladder.py), and
the shipped seed model by::

    latentwire-train --preset seed --epochs 10 --seed 0 --out shared/latentwire/pretrained/seed

Two kinds of preset: ``seed`` / ``tiny`` minimize the reconstruction loss alone and quantize the
latent to 8 bits afterwards; the vector-latent presets (``dense``, ``dense-32``, ``residual`` …)
learn an entropy model jointly and minimize rate + λ·distortion (bits per image + λ · per-image
sum of the loss over pixels). The entropy model is ``--prior factorized`` or ``--prior
conditional`` (every level of the shipped ladder): each latent value's Laplace mean and scale
predicted from the groups of values before it (latentwire.conditional), decoded in ``--groups``
passes. ``--warmup`` steps of linear learning-rate warm-up keep a run from dying in its first
epoch (docs/rd.md).

Reads top to bottom: options → device → data → model → optimizer → evaluate → loop → export.
Writes ``encoder.safetensors``, ``decoder.safetensors`` and ``reconstructions.png`` into --out.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

import latentwire
from latentwire.bitstream import model_id_bytes
from latentwire.checkpoint import load_decoder, load_encoder, save_checkpoint
from latentwire.codec import Compressor, Decompressor, to_tensor
from latentwire.conditional import MAX_WIDTH, ConditionalPrior
from latentwire.data import dataset_checksum, load_mnist
from latentwire.entropy import FactorizedPrior
from latentwire.errors import LatentwireError
from latentwire.latent_codecs import ConditionalCodec, FactorizedCodec, LatentCodec, Uniform8Codec
from latentwire.nets import PRESETS, Decoder, Encoder, Scale, get_preset
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
    p.add_argument(
        "--quantization",
        choices=("ste", "noise"),
        default="ste",
        help="vector-latent presets: what the decoder is trained on: the rounded latent with the "
        "gradient passed straight through (ste), or the latent plus uniform noise (noise, Ballé et "
        "al.); the rate is always that of the noisy latent",
    )
    p.add_argument(
        "--finetune-decoder",
        type=int,
        default=0,
        help="vector-latent presets: epochs after --epochs that train the decoder alone on the "
        "rounded latents (encoder and entropy models frozen), at a tenth of --lr, cosine",
    )
    p.add_argument(
        "--finetune-prior",
        type=int,
        default=0,
        help="vector-latent presets: epochs after the decoder's that train the entropy models alone "
        "on the rate of the training digits as they are (no --shift; encoder, gains and decoder "
        "frozen; the conditional model's rate is that of the rounded latents, the factorized "
        "one's of the noisy ones), at a twentieth of --lr, cosine (docs/rd.md §11)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="steps of linear learning-rate warm-up (at 2e-3 without it a run can die in its first "
        "epoch; 500 saved the one measured in docs/rd.md)",
    )
    p.add_argument(
        "--output-bias",
        choices=("default", "mean"),
        default="default",
        help="the decoder's output bias at the start: torch's default init (a grey image), or the "
        "logit of the training pixels' mean (deeper decoders then do not die in their first epoch: "
        "docs/rd.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, data and device → same metrics")
    p.add_argument(
        "--loss", choices=("bce", "mse"), default="bce", help="the tutorial's cross-entropy, or MSE"
    )
    p.add_argument(
        "--lmbda",
        type=_floats,
        default=[30.0],
        help="vector-latent presets: λ in bits + λ·distortion (larger: bigger codes, better quality)",
    )
    p.add_argument(
        "--level",
        type=int,
        default=3,
        help="vector-latent presets: the quality level the codes carry (1-7); with several λ, the first "
        "one's, and the levels go to --out/q<level>",
    )
    p.add_argument(
        "--prior",
        choices=sorted(PRIORS),
        default="factorized",
        help="vector-latent presets: the entropy model (factorized: each value coded alone, the ladder's "
        "before issue 10; conditional: every shipped level's, each value's distribution predicted from "
        "the values before it, 14%% smaller codes in docs/rd.md)",
    )
    p.add_argument(
        "--groups",
        type=int,
        default=8,
        help="--prior conditional: groups of latent values decoded one after another (more: fewer "
        "bits, slower decoding; the latent size: fully sequential)",
    )
    p.add_argument(
        "--prior-hidden",
        type=int,
        default=0,
        help="--prior conditional: hidden units of the masked MLP (0: twice the latent size, 16 at least)",
    )
    p.add_argument(
        "--shift",
        type=int,
        default=0,
        help="training digits only: move each by a random whole-pixel offset of up to N pixels each "
        "way, a fresh one every epoch (a regularizer: long runs overfit, docs/rd.md); 0 = none",
    )
    p.add_argument(
        "--init-from", type=Path, help="start from this checkpoint's network weights (same preset)"
    )
    p.add_argument(
        "--retires",
        action="append",
        default=[],
        metavar="MODEL_ID",
        help="the model this one replaces at its level (repeatable: every model the level served "
        "before): receivers refuse its codes by name, and this model never makes a code that "
        "passes its check (docs/bitstream.md)",
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


def _floats(text: str) -> list[float]:
    """'8' or '3,8,20': one λ per quality level."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("every λ must be positive")
    return values


def learning_rate_factor(schedule: str, *, warmup: int, steps: int) -> Callable[[int], float]:
    """The multiplier of --lr at each step: a linear warm-up, then constant or cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))

    return factor


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


def shift_randomly(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each (N, 1, H, W) image moved by its own random offset in [-max_shift, max_shift]², zeros in."""
    if max_shift <= 0:
        return images
    count, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, count), generator=generator, device=images.device)
    rows = offsets[0][:, None] + torch.arange(height, device=images.device)  # (N, H) rows of the crop
    cols = offsets[1][:, None] + torch.arange(width, device=images.device)
    index = torch.arange(count, device=images.device)[:, None, None]
    return padded[index, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def batches(
    images: torch.Tensor,
    *,
    batch_size: int,
    sigma: float,
    generator: torch.Generator,
    shuffle: bool,
    shift: int = 0,
) -> Iterator[Batch]:
    order = torch.randperm(len(images), generator=generator, device=images.device) if shuffle else None
    for start in range(0, len(images), batch_size):
        clean = (
            images[order[start : start + batch_size]]
            if order is not None
            else images[start : start + batch_size]
        )
        clean = shift_randomly(clean, shift, generator)
        yield Batch(add_noise(clean, sigma, generator), clean)


# -----------------------------------------------------------------------------
# model and loss


class PriorKind(NamedTuple):
    """An entropy model the trainer can train (``--prior``): how to build it, how to freeze it."""

    build: Callable[[int, argparse.Namespace], nn.Module]  # (latent size K, options) → prior
    freeze: Callable[[nn.Module], LatentCodec]  # trained prior → its integer latent codec


def _freeze_factorized(prior: nn.Module) -> LatentCodec:
    assert isinstance(prior, FactorizedPrior)
    return FactorizedCodec(prior.freeze())


def _freeze_conditional(prior: nn.Module) -> LatentCodec:
    assert isinstance(prior, ConditionalPrior)
    return ConditionalCodec.from_prior(prior)


PRIORS = {
    "factorized": PriorKind(lambda dims, args: FactorizedPrior(dims), _freeze_factorized),
    "conditional": PriorKind(
        lambda dims, args: ConditionalPrior(dims, groups=args.groups, hidden=args.prior_hidden),
        _freeze_conditional,
    ),
}


class RateHeads(nn.Module):
    """What rate training adds to a vector-latent preset: one entropy model per quality level, and gains.

    One network serves every level (Cui et al.'s gained variable-rate autoencoder): level l scales
    the latent by a learned gain before rounding and by a learned inverse gain before decoding,
    and has its own prior. At export the gains are folded into the encoder's last and the
    decoder's first layer (linear, or a Scale in the spatial family), so each level becomes an
    ordinary checkpoint. Training L
    levels costs about what training one does.
    """

    def __init__(self, priors: Sequence[nn.Module], dims: int) -> None:
        super().__init__()
        self.priors = nn.ModuleList(priors)  # one per level
        levels = len(priors)
        self.log_gains = nn.Parameter(torch.zeros(levels, dims))
        self.log_inverse_gains = nn.Parameter(torch.zeros(levels, dims))


class Model(NamedTuple):
    encoder: Encoder
    decoder: Decoder
    heads: RateHeads | None  # rate-trained (vector-latent) presets only


def distortion(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image sum over pixels of the reconstruction loss: (B,)."""
    if kind == "bce":
        per_pixel = F.binary_cross_entropy(output, target, reduction="none")
    else:
        per_pixel = (output - target) ** 2
    return per_pixel.flatten(1).sum(dim=1)


def start_at_mean_pixel(decoder: Decoder, images: torch.Tensor) -> None:
    """Set the decoder's output bias to the logit of the images' mean pixel.

    torch's default init starts the decoder at grey 0.5 over mostly black digits (mean 0.13), so
    its first steps push every output down. In a deeper decoder that can switch off every ReLU
    before the output for good: a black image, which no later step brings back (docs/rd.md).
    """
    output = [m for m in decoder.net if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    if output.bias is None:
        raise ValueError("the decoder's output layer has no bias")
    mean = images.mean().clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        output.bias.fill_(torch.logit(mean).item())


def forward(
    model: Model,
    batch: Batch,
    *,
    loss: str,
    lmbdas: Sequence[float],
    level: int | None = None,
    quantization: str = "ste",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, output images, bits per image); bits are 0 for presets without a prior.

    Rate training splits the batch between the levels (image i goes to level i mod L) unless
    ``level`` names one. In training the decoder sees the rounded latent (straight-through) or,
    with ``quantization="noise"``, the latent plus uniform noise; in eval mode always the rounded.
    """
    latents = model.encoder(batch.inputs)  # (B, K) or (B, C, 7, 7)
    if model.heads is None:
        output = model.decoder(latents)
        bits = torch.zeros(len(output), device=output.device)
        return distortion(loss, output, batch.targets).mean() / (28 * 28), output, bits
    heads, count = model.heads, len(latents)
    levels = torch.full((count,), level) if level is not None else torch.arange(count) % len(heads.priors)
    levels = levels.to(latents.device)
    scaled = latents * torch.exp(heads.log_gains[levels])
    rounded, bits = torch.empty_like(scaled), torch.empty(count, device=scaled.device)
    for index, prior in enumerate(heads.priors):  # rate on noisy latents; rounded ones (straight-through)
        rows = levels == index
        if rows.any():
            rounded[rows], bits[rows] = prior(scaled[rows])
    quantized = rounded
    if quantization == "noise" and heads.training:
        quantized = scaled + torch.empty_like(scaled).uniform_(-0.5, 0.5)
    output = model.decoder(quantized * torch.exp(heads.log_inverse_gains[levels]))
    weights = torch.tensor(lmbdas, device=scaled.device)[levels]
    return (bits + weights * distortion(loss, output, batch.targets)).mean(), output, bits


# -----------------------------------------------------------------------------
# evaluate


@torch.no_grad()
def evaluate(
    model: Model, images: torch.Tensor, *, loss: str, lmbdas: Sequence[float], sigma: float, level: int | None
) -> dict[str, float]:
    """Objective, estimated bits and PSNR (of the mean MSE, on uint8 pixels) over ``images``."""
    modules = [m for m in model if m is not None]
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    generator = torch.Generator(device=images.device).manual_seed(1234)  # same noise every epoch
    total, bits_sum, squared, count = 0.0, 0.0, 0.0, 0
    for batch in batches(images, batch_size=1000, sigma=sigma, generator=generator, shuffle=False):
        objective, output, bits = forward(model, batch, loss=loss, lmbdas=lmbdas, level=level)
        total += float(objective) * len(output)
        bits_sum += float(bits.sum())
        squared += float(((torch.round(output * 255) - torch.round(batch.targets * 255)) ** 2).sum())
        count += len(output)
    for module, mode in zip(modules, modes, strict=True):
        module.train(mode)
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
    info_bits: list[np.ndarray] = []  # per image, where the codec has an entropy model to measure with
    for start in range(0, len(inputs), 1000):
        latents = compressor.latents(inputs[start : start + 1000])
        codes += [compressor.frame(p) for p in compressor.code_latents(latents)]
        bits = compressor.latent_codec.information_bits(latents)
        if bits is not None:
            info_bits.append(bits)
    decoded = np.concatenate(
        [decompressor.decompress(codes[s : s + 1000]) for s in range(0, len(codes), 1000)]
    )
    metrics = {
        "psnr": psnr(test_images, decoded),
        "code_bytes": float(np.mean([len(c) for c in codes])),
        "payload_bytes": float(np.mean([len(c) - compressor.framing_bytes for c in codes])),
        "test_images": float(len(test_images)),
    }
    if info_bits:
        metrics["information_bits"] = float(np.concatenate(info_bits).mean())
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


def fold_gains(model: Model, index: int) -> tuple[Encoder, Decoder]:
    """Level ``index`` as a plain network pair: its gains folded into the outer (linear or Scale) layers."""
    assert model.heads is not None
    encoder, decoder = copy.deepcopy(model.encoder).cpu(), copy.deepcopy(model.decoder).cpu()
    gain = torch.exp(model.heads.log_gains[index]).detach().cpu()
    inverse = torch.exp(model.heads.log_inverse_gains[index]).detach().cpu()
    # the bottleneck layers of the vector-latent families: linear, or a Scale (spatial)
    last, first = list(encoder.net.children())[-1], next(decoder.net.children())
    with torch.no_grad():
        if isinstance(last, Scale) and isinstance(first, Scale):
            last.weight.mul_(gain)
            first.weight.mul_(inverse)
        else:
            assert isinstance(last, nn.Linear) and isinstance(first, nn.Linear)
            last.weight.mul_(gain[:, None])
            last.bias.mul_(gain)
            first.weight.mul_(inverse[None, :])
    return encoder, decoder


def export(
    model: Model, args: argparse.Namespace, index: int, out: Path, train: torch.Tensor, **meta: Any
) -> None:
    """Freeze level ``index``'s codec (8-bit range, or integer CDF tables) and write both halves."""
    if model.heads is None:
        encoder, decoder = copy.deepcopy(model.encoder).cpu(), copy.deepcopy(model.decoder).cpu()
        with torch.no_grad():
            sample = train[:10_000].cpu()
            latents = torch.cat([encoder(sample[i : i + 1000]) for i in range(0, len(sample), 1000)])
        codec: LatentCodec = Uniform8Codec.fit(latents)
        level = 0
    else:
        encoder, decoder = fold_gains(model, index)
        codec = PRIORS[args.prior].freeze(copy.deepcopy(model.heads.priors[index]).cpu())
        level = args.level + index
    training = {**meta.pop("training"), "lmbda": args.lmbda[index], "level": level}
    save_checkpoint(
        out, encoder=encoder, decoder=decoder, codec=codec.params.to_dict(), tables=codec.tables(),
        level=level, denoise=args.noise_sigma > 0, training=training,
        retired_model_ids=args.retires, **meta,
    )  # fmt: skip


def write_figure(out: Path, test_np: np.ndarray, args: argparse.Namespace) -> None:
    """Originals over reconstructions through the exported codec, like the tutorial's display()."""
    shown = test_np[:10]
    rows = [shown]
    if args.noise_sigma > 0:
        shown = noisy_pixels(shown, args.noise_sigma, args.seed)
        rows.append(shown)
    compressor, decompressor = Compressor.from_checkpoint(out), Decompressor.from_checkpoint(out)
    rows.append(decompressor.decompress(compressor.compress(shown)))
    save_figure(out / "reconstructions.png", rows)


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
    if not preset.vector_latent and len(args.lmbda) > 1:
        log.error("error: several --lmbda values need a vector-latent preset")
        return 2
    if not preset.vector_latent and args.prior != "factorized":
        log.error("error: --prior %s needs a vector-latent preset", args.prior)
        return 2
    if args.prior == "conditional" and not 1 <= args.groups <= preset.latent_dims:
        log.error("error: --groups must be in 1 … %d (the latent size)", preset.latent_dims)
        return 2
    if not preset.vector_latent and (
        args.finetune_decoder or args.finetune_prior or args.quantization != "ste"
    ):
        log.error(
            "error: --finetune-decoder, --finetune-prior and --quantization need a vector-latent preset"
        )
        return 2
    if args.warmup < 0:
        log.error("error: --warmup must be 0 or more steps")
        return 2
    if args.output_bias != "default" and args.init_from:
        log.error("error: --output-bias sets a starting point; --init-from brings its own")
        return 2
    if args.retires and (not preset.vector_latent or len(args.lmbda) > 1):
        log.error("error: --retires names the models of one entropy-coded level (one --lmbda)")
        return 2
    for retired in args.retires:
        try:
            model_id_bytes(retired)
        except ValueError as exc:
            log.error("error: --retires: %s", exc)
            return 2
    if args.finetune_decoder < 0 or args.finetune_prior < 0:
        log.error("error: --finetune-decoder and --finetune-prior must be 0 or more epochs")
        return 2
    if not 0 <= args.prior_hidden <= MAX_WIDTH:
        log.error("error: --prior-hidden must be in 0 … %d", MAX_WIDTH)
        return 2
    if not 0 <= args.shift <= 7:
        log.error("error: --shift must be in 0 … 7 pixels (a quarter of the image)")
        return 2

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
    heads = None
    if preset.vector_latent:
        priors = [PRIORS[args.prior].build(preset.latent_dims, args) for _ in args.lmbda]
        heads = RateHeads(priors, preset.latent_dims).to(device)
    model = Model(Encoder(preset).to(device), Decoder(preset).to(device), heads)
    if args.init_from:  # warm start: the network's weights (not the entropy model's) from a checkpoint
        try:
            model.encoder.load_state_dict(load_encoder(args.init_from).module.state_dict())
            model.decoder.load_state_dict(load_decoder(args.init_from).module.state_dict())
        except (LatentwireError, RuntimeError) as exc:
            log.error("error: cannot start from %s: %s", args.init_from, exc)
            return 1
    if args.output_bias == "mean":
        start_at_mean_pixel(model.decoder, train_images)
    params = [p for module in model if module is not None for p in module.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    steps = args.epochs * math.ceil(len(train_images) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, learning_rate_factor(args.schedule, warmup=args.warmup, steps=steps)
    )
    log.info("parameters: %d", sum(p.numel() for p in params))

    # training loop
    generator = torch.Generator(device=device).manual_seed(args.seed)
    started = time.perf_counter()
    prior_bits: dict[int, float] = {}  # the float entropy model's rate on the test set, by level index
    # --epochs of the whole model, then --finetune-decoder epochs of the decoder alone, then
    # --finetune-prior epochs of the entropy models alone
    schedule = [(optimizer, scheduler, "all")] * args.epochs  # (optimizer, lr schedule, stage)
    for stage, epochs, part, lr in (
        ("decoder", args.finetune_decoder, model.decoder, args.lr / 10),
        ("prior", args.finetune_prior, heads.priors if heads is not None else None, args.lr / 20),
    ):
        if epochs and part is not None:
            stage_optimizer = torch.optim.Adam(part.parameters(), lr=lr)
            stage_steps = epochs * math.ceil(len(train_images) / args.batch_size)
            stage_schedule = torch.optim.lr_scheduler.LambdaLR(
                stage_optimizer, learning_rate_factor("cosine", warmup=0, steps=stage_steps)
            )
            schedule += [(stage_optimizer, stage_schedule, stage)] * epochs
    for epoch, (optimizer, scheduler, stage) in enumerate(schedule, start=1):
        for module in (model.encoder, model.decoder, heads):  # only the stage's part learns
            if module is not None:
                learns = stage == "all" or (stage == "decoder" and module is model.decoder)
                module.train(learns)
                module.requires_grad_(learns)
        if stage == "prior" and heads is not None:
            heads.priors.requires_grad_(True)  # in eval mode: the rate of the rounded latents
        stream = batches(
            train_images,
            batch_size=args.batch_size,
            sigma=args.noise_sigma,
            generator=generator,
            shuffle=True,
            shift=0 if stage == "prior" else args.shift,  # the codes are of digits as they are
        )
        total = math.ceil(len(train_images) / args.batch_size)
        running = 0.0
        description = f"epoch {epoch}/{len(schedule)}"
        with tqdm(stream, total=total, desc=description, leave=False, disable=None) as bar:
            for step, batch in enumerate(bar):
                objective, _, bits = forward(
                    model, batch, loss=args.loss, lmbdas=args.lmbda, quantization=args.quantization
                )
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                scheduler.step()
                value = objective.item()
                running = value if step == 0 else 0.95 * running + 0.05 * value
                bar.set_postfix(loss=f"{running:.4f}", bits=f"{bits.mean().item():.1f}")
        for index in range(len(args.lmbda)):
            level = index if heads is not None else None
            val = evaluate(
                model, test_images, loss=args.loss, lmbdas=args.lmbda, sigma=args.noise_sigma, level=level
            )
            name = f" level {args.level + index}" if heads else ""
            name += {"all": "", "decoder": " (decoder fine-tuning)", "prior": " (entropy-model refit)"}[stage]
            if heads is not None:
                prior_bits[index] = val["bits"]
            log.info(
                "epoch %d%s: train %.4f, test %.4f, ~%.1f bits/image, test PSNR %.2f dB (%.0f s)",
                epoch, name, running, val["objective"], val["bits"], val["psnr"],
                time.perf_counter() - started,
            )  # fmt: skip

    # export: freeze each level's codec, write both halves, measure the real codec through the files
    training = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "verbose")
    }
    training.update(device=str(device), seconds=round(time.perf_counter() - started, 1))
    meta = {"data_checksum": checksum, "versions": library_versions(), "command": command}
    for index in range(len(args.lmbda)):
        out = args.out if len(args.lmbda) == 1 else args.out / f"q{args.level + index}"
        export(model, args, index, out, train_images, training=dict(training), **meta)
        metrics = codec_metrics(out, test_np, sigma=args.noise_sigma, seed=args.seed)
        if index in prior_bits:  # against information_bits: what freezing to integers costs
            metrics["prior_bits"] = prior_bits[index]
        export(model, args, index, out, train_images, training=dict(training), metrics=metrics, **meta)
        write_figure(out, test_np, args)
        log.info("%s: %.2f bytes/code, PSNR %.2f dB", out, metrics["code_bytes"], metrics["psnr"])
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
