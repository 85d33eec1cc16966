"""latentwire-eval: measure the quality ladder against standard codecs on the MNIST test set.

Run it::

    latentwire-eval                                  # the shipped ladder, all 10,000 test images → results/
    latentwire-eval --models runs/ladder --out /tmp/eval --limit 1000   # another ladder, a quick look

For every model of the ladder, and for PNG, WebP, JPEG and PCA at several settings, it measures
bytes per image, PSNR (of the mean MSE, and the mean of per-image PSNRs), SSIM, and the accuracy
of a reference digit classifier on the reconstructions (see docs/evaluation.md). The denoising
model gets noisy inputs (σ 0.4) and is scored against the clean originals.

Writes ``results.md``, ``results.json`` and ``rd.png`` into --out.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentwire import bitstream
from latentwire.codec import Compressor
from latentwire.data import MnistSplit, dataset_checksum, load_mnist
from latentwire.errors import LatentwireError
from latentwire.ladder import DecoderLadder, EncoderLadder, describe
from latentwire.preprocess import psnr
from latentwire_eval import baselines, report
from latentwire_eval.classifier import ClassifierConfig, ClassifierError, DigitClassifier, load_or_train
from latentwire_eval.metrics import PSNR_CAP, Quality, Row, noisy_pixels, quality

__all__ = ["build_parser", "evaluate_ladder", "main", "run"]

log = logging.getLogger("latentwire.eval")

CHUNK = 1000  # images per compress / decompress call
NOISE_SIGMA = 0.4  # the tutorial's, and the shipped denoiser's


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-eval",
        description="Rate, distortion and classifier accuracy of a latentwire ladder and of standard codecs.",
    )
    p.add_argument("--models", type=Path, default=None, help="ladder directory (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("results"), help="where results.md/.json and rd.png go")
    p.add_argument("--limit", type=int, default=0, help="first N test images only (0 = all 10,000)")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="MNIST directory (default: $LATENTWIRE_DATA_DIR)"
    )
    p.add_argument(
        "--classifier-dir",
        type=Path,
        default=None,
        help="where the reference classifier is cached (default: next to the MNIST directory)",
    )
    p.add_argument(
        "--noise-sigma", type=float, default=NOISE_SIGMA, help="the denoiser's input noise σ on [0, 1]"
    )
    p.add_argument("--noise-seed", type=int, default=0, help="seed of that noise (the trainer's default)")
    p.add_argument("--no-baselines", action="store_true", help="evaluate the ladder only")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("-v", "--verbose", action="store_true")
    # For tests and quick looks: a smaller classifier training run (its accuracy is not checked),
    # PCA fitted on fewer training images, other PCA settings ("K:STEP" …).
    p.add_argument("--classifier-train-limit", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--classifier-epochs", type=int, default=ClassifierConfig.epochs, help=argparse.SUPPRESS)
    p.add_argument("--pca-train-limit", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--pca", nargs="+", default=None, metavar="K:STEP", help=argparse.SUPPRESS)
    return p


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)


def _setting(compressor: Compressor) -> str:
    if compressor.format_version == bitstream.FORMAT_V1:
        return f"q{compressor.level} (v1)"
    return f"q{compressor.level}" + ("-denoise" if compressor.denoise else "")


def _method(compressor: Compressor) -> str:
    if compressor.format_version == bitstream.FORMAT_V1:
        return "latentwire v1"
    return "latentwire denoise" if compressor.denoise else "latentwire"


def evaluate_ladder(
    encoders: EncoderLadder,
    decoders: DecoderLadder,
    clean: np.ndarray,
    noisy: np.ndarray,
    labels: np.ndarray,
    classifier: DigitClassifier,
    *,
    sigma: float = NOISE_SIGMA,
) -> list[Row]:
    """One row per model: real codes (framing included) through the real decoders.

    A denoising model encodes ``noisy`` (made with noise ``sigma``) and is scored against ``clean``.
    """
    rows = []
    for compressor in encoders.levels():
        started = time.perf_counter()
        inputs = noisy if compressor.denoise else clean
        codes: list[bytes] = []
        info_bits: list[np.ndarray] = []  # per image, where the codec has an entropy model to measure with
        for start in range(0, len(inputs), CHUNK):
            latents = compressor.latents(inputs[start : start + CHUNK])
            codes += [compressor.frame(p) for p in compressor.code_latents(latents)]
            bits = compressor.latent_codec.information_bits(latents)
            if bits is not None:
                info_bits.append(bits)
        decoded = []
        for start in range(0, len(codes), CHUNK):
            pixels, models = decoders.decompress(codes[start : start + CHUNK])
            if any(m.model_id != compressor.model_id for m in models):
                raise RuntimeError(f"codes of {compressor.model_id} were routed to another decoder")
            decoded.append(pixels)
        reconstructions = np.concatenate(decoded)
        decoder = decoders.by_id[compressor.model_id]
        payload = float(np.mean([len(decoder.payload(c)) for c in codes]))
        q = quality(clean, reconstructions, classifier.accuracy(reconstructions, labels))
        notes, extra = f"model {compressor.model_id}", {}
        if compressor.denoise:
            extra["psnr_noisy_input"] = psnr(clean, noisy)
            notes += f"; input noisy (σ {sigma:g}, PSNR {extra['psnr_noisy_input']:.2f} dB), scored vs clean"
        rows.append(
            Row(
                method=_method(compressor),
                setting=_setting(compressor),
                bytes=float(np.mean([len(c) for c in codes])),
                payload_bytes=payload,
                info_bytes=float(np.concatenate(info_bits).mean()) / 8 if info_bits else None,
                quality=q,
                model_id=compressor.model_id,
                notes=notes,
                extra=extra,
            )
        )
        log.info(
            "%-20s %-12s %7.2f B/image, PSNR %.2f dB, SSIM %.4f, accuracy %.2f%% (%.1f s)",
            rows[-1].method, rows[-1].setting, rows[-1].bytes, q.psnr, q.ssim, 100 * q.accuracy,
            time.perf_counter() - started,
        )  # fmt: skip
    settings = [row.setting for row in rows]
    for row in rows:  # two v1 models (both level 0) would share a setting: tell them apart
        if settings.count(row.setting) > 1:
            row.setting += f" {row.model_id}"
    return rows


def evaluate_image_codecs(clean: np.ndarray, labels: np.ndarray, classifier: DigitClassifier) -> list[Row]:
    rows = []
    for codec in baselines.IMAGE_CODECS:
        started = time.perf_counter()
        sizes, decoded = baselines.pillow_roundtrip(clean, codec)
        q = quality(clean, decoded, classifier.accuracy(decoded, labels))
        rows.append(Row(codec.method, codec.setting, float(sizes.mean()), None, None, q))
        log.info(
            "%-20s %-12s %7.2f B/image, PSNR %.2f dB, SSIM %.4f, accuracy %.2f%% (%.1f s)",
            codec.method, codec.setting, sizes.mean(), q.psnr, q.ssim, 100 * q.accuracy,
            time.perf_counter() - started,
        )  # fmt: skip
    return rows


def evaluate_pca(
    train_images: np.ndarray,
    clean: np.ndarray,
    labels: np.ndarray,
    classifier: DigitClassifier,
    settings: Sequence[tuple[int, float]],
) -> list[Row]:
    started = time.perf_counter()
    pca = baselines.Pca.fit(train_images, max_components=max(k for k, _ in settings))
    log.info("PCA fitted on %d training images (%.1f s)", len(train_images), time.perf_counter() - started)
    rows = []
    for k, step in settings:
        bits, decoded = baselines.pca_roundtrip(pca, train_images, clean, k, step)
        q = quality(clean, decoded, classifier.accuracy(decoded, labels))
        ideal = float(bits.mean() / 8)
        rows.append(Row("PCA (ideal)", f"k={k}, step={step:g}", ideal, None, ideal, q))
        log.info(
            "%-20s %-12s %7.2f B/image, PSNR %.2f dB, SSIM %.4f, accuracy %.2f%%",
            "PCA (ideal)", rows[-1].setting, ideal, q.psnr, q.ssim, 100 * q.accuracy,
        )  # fmt: skip
    return rows


def _ladder_info(encoders: EncoderLadder) -> list[dict[str, Any]]:
    return [
        {
            "setting": _setting(m),
            "model_id": m.model_id,
            "level": m.level,
            "denoise": m.denoise,
            "format_version": m.format_version,
            "checkpoint_metrics": dict(m.meta.metrics),
        }
        for m in encoders.levels()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    command = shlex.join(["latentwire-eval", *(sys.argv[1:] if argv is None else argv)])
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = Timer()
    started = time.perf_counter()
    try:
        encoders, decoders = EncoderLadder.load(args.models), DecoderLadder.load(args.models)
        train: MnistSplit = load_mnist("train", data_dir=args.data_dir)
        test: MnistSplit = load_mnist("test", data_dir=args.data_dir)
        checksum = dataset_checksum(args.data_dir)
    except LatentwireError as exc:
        log.error("error: %s", exc)
        return 1
    log.info("ladder: %s", describe(encoders))
    clean, labels = test.images[: args.limit or None], test.labels[: args.limit or None]
    noisy = noisy_pixels(clean, args.noise_sigma, args.noise_seed)

    config = ClassifierConfig(epochs=args.classifier_epochs, train_limit=args.classifier_train_limit)
    try:
        classifier = timer(
            "classifier",
            lambda: load_or_train(
                config, train.images, train.labels, test.images, test.labels, cache_dir=args.classifier_dir
            ),
        )
    except ClassifierError as exc:
        log.error("error: %s", exc)
        return 1

    original_accuracy = classifier.accuracy(clean, labels)
    log.info("classifier on the %d original test images: %.2f%%", len(clean), 100 * original_accuracy)
    original = Quality(float("inf"), PSNR_CAP, 1.0, original_accuracy)
    noisy_quality = quality(clean, noisy, classifier.accuracy(noisy, labels))
    rows = [
        Row("original", "uncompressed", 784.0, None, None, original, notes="raw uint8 pixels"),
        Row("noisy input", f"σ {args.noise_sigma:g}, seed {args.noise_seed}", None, None, None, noisy_quality,
            notes="what the denoiser is given"),
    ]  # fmt: skip

    rows += timer(
        "ladder",
        lambda: evaluate_ladder(encoders, decoders, clean, noisy, labels, classifier, sigma=args.noise_sigma),
    )
    if not args.no_baselines:
        rows += timer("image codecs", lambda: evaluate_image_codecs(clean, labels, classifier))
        pca_train = train.images[: args.pca_train_limit or None]
        settings = baselines.pca_settings(args.pca)
        rows += timer("pca", lambda: evaluate_pca(pca_train, clean, labels, classifier, settings))
    timer.seconds["total"] = round(time.perf_counter() - started, 2)

    args.out.mkdir(parents=True, exist_ok=True)
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": command,
        "test_images": len(clean),
        "ladder_ids": describe(encoders),
        "ladder": _ladder_info(encoders),
        "classifier_key": classifier.key,
        "classifier": classifier.info,
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("verbose",)
        }
        | {"models": str(args.models) if args.models else "shipped ladder", "psnr_cap_db": PSNR_CAP},
        "data_checksum": checksum,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "seconds": timer.seconds,
    }
    report.write_markdown(args.out / "results.md", rows, header)
    report.write_json(args.out / "results.json", rows, header)
    report.write_plot(
        args.out / "rd.png", rows, title=f"latentwire vs standard codecs, {len(clean)} MNIST test digits"
    )
    log.info(
        "done in %.0f s (%s)",
        timer.seconds["total"],
        ", ".join(f"{k} {v:.0f} s" for k, v in timer.seconds.items()),
    )
    print(args.out / "results.md")
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
