"""latentwire-bench's in-process sections: the codec per ladder level, the networks alone, and the
sender's preprocessing of a phone photo. No HTTP here.

Each figure is images (or calls) per second over a time budget: one warm-up call, then calls until
the budget is spent (and at most ``max_calls``), so every loop is bounded in time and count.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from latentwire.codec import Compressor, Decompressor
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import load_digit
from latentwire_eval.bench_report import Table

__all__ = [
    "CodecResult",
    "CodecRow",
    "NetworksResult",
    "PreprocessResult",
    "bench_codec",
    "bench_networks",
    "bench_preprocess",
    "codec_tables",
    "in_process_round_trip",
    "networks_table",
    "phone_photo",
    "preprocess_table",
    "throughput",
]


# --------------------------------------------------------------------------- adapters
# The internals these sections call, in one place: a rename in latentwire.codec is a one-line fix.


def compress(model: Compressor, images: np.ndarray) -> list[bytes]:
    return model.compress(images)


def decompress(ladder: DecoderLadder, codes: Sequence[bytes]) -> np.ndarray:
    return ladder.decompress(codes)[0]


def encoder_forward(model: Compressor, images: np.ndarray) -> object:
    return model.latents(images)


def decoder_input(model: Compressor, images: np.ndarray) -> np.ndarray:
    """What the decoder network receives: the encoder's latents, rounded, as float64 (N, K)."""
    latents = np.asarray(model.latents(images), dtype=np.float64)
    return np.round(latents).reshape(len(images), -1)


def decoder_forward(model: Decompressor, latents: np.ndarray) -> object:
    return model.decode_latents(latents)


def decompressor_for(ladder: DecoderLadder, level: int) -> Decompressor:
    return ladder.by_level[(level, False)]


def model_name(model: Compressor) -> str:
    return f"q{model.level}{'-denoise' if model.denoise else ''} (v{model.format_version})"


# --------------------------------------------------------------------------- timing


def throughput(
    work: Callable[[int], object], items_per_call: int, *, budget_s: float, max_calls: int
) -> float:
    """Items per second of ``work(i)`` (i = 0, 1, …): one warm-up call, then calls for ``budget_s``."""
    work(0)
    calls, started = 0, time.perf_counter()
    elapsed = 0.0
    while calls < max_calls and (calls == 0 or elapsed < budget_s):
        work(calls + 1)
        calls += 1
        elapsed = time.perf_counter() - started
    return calls * items_per_call / elapsed


def _batches(images: np.ndarray, size: int) -> list[np.ndarray]:
    """Whole batches of ``size`` (at least one, even if ``images`` is shorter)."""
    count = max(1, len(images) // size)
    return [images[i * size : (i + 1) * size] for i in range(count)]


# --------------------------------------------------------------------------- codec


@dataclass
class CodecRow:
    model: str
    model_id: str
    level: int
    denoise: bool
    format_version: int
    mean_code_bytes: float
    compress_b1: float  # images/s
    compress_batch: float
    decompress_b1: float
    decompress_batch: float


@dataclass
class CodecResult:
    images: int
    batch: int
    budget_s: float
    default_level: int
    rows: list[CodecRow]
    round_trip_batch: float  # compress then decompress, images/s, default level


def _codec_row(
    model: Compressor,
    decoders: DecoderLadder,
    images: np.ndarray,
    batch: int,
    budget_s: float,
    max_calls: int,
) -> CodecRow:
    singles = [images[i : i + 1] for i in range(min(len(images), 256))]
    # a code is the same made alone or in a batch (latentwire.codec), so one call makes them all
    single_codes = [[code] for code in compress(model, images[: len(singles)])]
    batches = _batches(images, batch)
    batch_codes = [compress(model, b) for b in batches]

    def rate(work: Callable[[int], object], per_call: int) -> float:
        return throughput(work, per_call, budget_s=budget_s, max_calls=max_calls)

    return CodecRow(
        model=model_name(model),
        model_id=model.model_id,
        level=model.level,
        denoise=model.denoise,
        format_version=model.format_version,
        mean_code_bytes=float(np.mean([len(c) for codes in batch_codes for c in codes])),
        compress_b1=rate(lambda i: compress(model, singles[i % len(singles)]), 1),
        compress_batch=rate(lambda i: compress(model, batches[i % len(batches)]), len(batches[0])),
        decompress_b1=rate(lambda i: decompress(decoders, single_codes[i % len(singles)]), 1),
        decompress_batch=rate(lambda i: decompress(decoders, batch_codes[i % len(batches)]), len(batches[0])),
    )


def bench_codec(
    images: np.ndarray,
    models: Path | None,
    *,
    batch: int = 256,
    budget_s: float = 1.0,
    max_calls: int = 100_000,
) -> CodecResult:
    """img/s of compress and decompress per level at batch 1 and ``batch``; the default level's round trip."""
    encoders, decoders = EncoderLadder.load(models), DecoderLadder.load(models)
    rows = [_codec_row(m, decoders, images, batch, budget_s, max_calls) for m in encoders.levels()]
    round_trip = _round_trip(encoders, decoders, images, batch, budget_s, max_calls)
    return CodecResult(
        len(images), min(batch, len(images)), budget_s, encoders.default_quality, rows, round_trip
    )


def _round_trip(
    encoders: EncoderLadder,
    decoders: DecoderLadder,
    images: np.ndarray,
    batch: int,
    budget_s: float,
    max_calls: int,
) -> float:
    default = encoders.select(quality=encoders.default_quality)
    batches = _batches(images, batch)
    return throughput(
        lambda i: decompress(decoders, compress(default, batches[i % len(batches)])),
        len(batches[0]),
        budget_s=budget_s,
        max_calls=max_calls,
    )


def in_process_round_trip(
    images: np.ndarray, models: Path | None, *, batch: int = 256, budget_s: float = 1.0
) -> float:
    """The default level's compress-then-decompress images/s alone (when the codec section is skipped)."""
    encoders, decoders = EncoderLadder.load(models), DecoderLadder.load(models)
    return _round_trip(encoders, decoders, images, batch, budget_s, 100_000)


def codec_tables(result: CodecResult) -> list[Table]:
    b = result.batch
    rows: list[list[str | int | float | None]] = [
        [r.model, r.mean_code_bytes, r.compress_b1, r.compress_batch, r.decompress_b1, r.decompress_batch]
        for r in result.rows
    ]
    return [
        Table(
            title="Codec in process (images/s)",
            columns=[
                "model",
                "code bytes",
                "compress ×1",
                f"compress ×{b}",
                "decompress ×1",
                f"decompress ×{b}",
            ],
            rows=rows,
            notes=[
                f"Round trip (compress then decompress) at q{result.default_level}, batches of {b}: "
                f"**{result.round_trip_batch:,.0f} images/s**. {result.images} MNIST test digits, "
                f"{result.budget_s:g} s per figure."
            ],
        )
    ]


# --------------------------------------------------------------------------- networks


@dataclass
class NetworksResult:
    level: int
    model_id: str
    batch: int
    encoder: float  # images/s
    decoder: float


def bench_networks(
    images: np.ndarray,
    models: Path | None,
    *,
    batch: int = 256,
    budget_s: float = 1.0,
    max_calls: int = 100_000,
) -> NetworksResult:
    """The default level's encoder and decoder forward passes alone, images/s at ``batch``."""
    encoders, decoders = EncoderLadder.load(models), DecoderLadder.load(models)
    level = encoders.default_quality
    encoder, decoder = encoders.select(quality=level), decompressor_for(decoders, level)
    batches = _batches(images, batch)
    latents = [decoder_input(encoder, b) for b in batches]
    per_call = len(batches[0])
    return NetworksResult(
        level=level,
        model_id=encoder.model_id,
        batch=per_call,
        encoder=throughput(
            lambda i: encoder_forward(encoder, batches[i % len(batches)]),
            per_call,
            budget_s=budget_s,
            max_calls=max_calls,
        ),
        decoder=throughput(
            lambda i: decoder_forward(decoder, latents[i % len(latents)]),
            per_call,
            budget_s=budget_s,
            max_calls=max_calls,
        ),
    )


def networks_table(result: NetworksResult) -> Table:
    return Table(
        title=f"Networks alone, q{result.level}, batches of {result.batch} (images/s)",
        columns=["network", "images/s"],
        rows=[["encoder forward", result.encoder], ["decoder forward", result.decoder]],
    )


# --------------------------------------------------------------------------- preprocessing


@dataclass
class PreprocessResult:
    kind: str
    width: int
    height: int
    jpeg_bytes: int
    runs: int
    median_ms: float
    min_ms: float


#: Sensor noise (σ, grey levels) of the two photos timed: a typical one (a JPEG of ~0.3 MB, like
#: the issue's 275 kB phone photo) and a grainy one (~3 MB: noise does not compress, and a JPEG's
#: entropy decoding, which no draft mode skips, grows with the file).
PHOTO_NOISE = {"typical": 0.5, "grainy": 6.0}


def phone_photo(
    digit: np.ndarray, *, width: int = 4000, height: int = 3000, seed: int = 0, noise: float = 6.0
) -> bytes:
    """A JPEG (quality 90) like a phone photo of a digit: dark ink on light, noisy, tinted paper."""
    rng = np.random.default_rng(seed)
    side = height * 2 // 3
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255
    paper = 225.0 + rng.normal(0.0, noise, (height, width)).astype(np.float32)
    top, left = (height - side) // 2, (width - side) // 2
    paper[top : top + side, left : left + side] -= ink * 190.0
    tint = np.array([1.0, 0.97, 0.9], np.float32)  # warm indoor light
    rgb = np.clip(paper[..., None] * tint, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bench_preprocess(digit: np.ndarray, *, runs: int = 10) -> list[PreprocessResult]:
    """Median wall time of ``load_digit`` on 4000×3000 phone-photo JPEGs (typical and grainy)."""
    results = []
    for kind, noise in PHOTO_NOISE.items():
        data = phone_photo(digit, noise=noise)
        times = []
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            load_digit(data)
            times.append((time.perf_counter() - started) * 1000)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        results.append(
            PreprocessResult(kind, width, height, len(data), len(times), statistics.median(times), min(times))
        )
    return results


def preprocess_table(results: list[PreprocessResult]) -> Table:
    return Table(
        title="Sender preprocessing (latentwire.preprocess.load_digit)",
        columns=["input", "bytes", "median ms", "min ms"],
        rows=[
            [
                f"{r.width}×{r.height} RGB JPEG q90, {r.kind} phone photo",
                r.jpeg_bytes,
                r.median_ms,
                r.min_ms,
            ]
            for r in results
        ],
        notes=[f"{results[0].runs if results else 0} runs each."],
    )
