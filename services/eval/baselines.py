"""Baselines: standard image formats through Pillow, and PCA with an ideal entropy-code estimate.

Image formats (bytes = the whole file, headers included — that is what one would send):

* PNG, grayscale, ``optimize=True`` (lossless);
* WebP lossless (``quality=100, method=6``: the most effort) and lossy at a few qualities
  (``method=6``). Pillow stores a grayscale image as RGB in WebP; it is decoded back to L;
* JPEG, grayscale, ``optimize=True`` (optimized Huffman tables), at a few qualities.

PCA: the principal components of the training images (numpy SVD of the centered 60,000 × 784
matrix, pixels 0…255). A setting (k, step) keeps the first k coefficients, quantizes each to
``round(c / step)`` and reconstructs by the inverse transform, clipped and rounded to uint8.
The rate is an *ideal* estimate — no real coder is run: per component, the probability of each
quantized value is its frequency among the training set's quantized coefficients with add-one
smoothing over the observed range (``SymbolModel``), and an image costs Σ −log2 p over its k
coefficients. An arithmetic coder gets within a byte or so of this; a real file would also need
framing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_PCA_SETTINGS",
    "IMAGE_CODECS",
    "ImageCodec",
    "Pca",
    "SymbolModel",
    "image_codecs",
    "pca_roundtrip",
    "pillow_roundtrip",
]

log = logging.getLogger(__name__)

JPEG_QUALITIES = (5, 10, 20, 30, 50, 70, 90)
WEBP_QUALITIES = (0, 5, 10, 20, 50)
#: (components, step) of the PCA points: the convex hull of a sweep (k 4…256, step 30…400) in
#: the 10–60 byte range, i.e. the best this baseline does there. Steps are in pixel units (0…255).
DEFAULT_PCA_SETTINGS: tuple[tuple[int, float], ...] = (
    (32, 130.0),
    (64, 160.0),
    (128, 130.0),
    (192, 100.0),
    (256, 80.0),
)


class ImageCodec(NamedTuple):
    method: str  # the family, as the report groups it
    setting: str
    format: str  # Pillow format name
    options: dict[str, Any]  # Pillow save() options


def image_codecs() -> list[ImageCodec]:
    """Every standard-format setting evaluated."""
    codecs = [
        ImageCodec("PNG", "optimize", "PNG", {"optimize": True}),
        ImageCodec("WebP lossless", "method 6", "WEBP", {"lossless": True, "quality": 100, "method": 6}),
    ]
    codecs += [ImageCodec("WebP", f"q={q}", "WEBP", {"quality": q, "method": 6}) for q in WEBP_QUALITIES]
    codecs += [ImageCodec("JPEG", f"q={q}", "JPEG", {"quality": q, "optimize": True}) for q in JPEG_QUALITIES]
    return codecs


IMAGE_CODECS = image_codecs()


def pillow_roundtrip(images: np.ndarray, codec: ImageCodec) -> tuple[np.ndarray, np.ndarray]:
    """Encode each uint8 (28, 28) image to a file and decode it back: (file sizes (N,), (N, 28, 28))."""
    sizes = np.zeros(len(images), np.int64)
    out = np.zeros_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=codec.format, **codec.options)
        data = buffer.getvalue()
        sizes[i] = len(data)
        with Image.open(io.BytesIO(data)) as decoded:
            out[i] = np.asarray(decoded.convert("L"))
    return sizes, out


# --------------------------------------------------------------------------- PCA


def _gamma_bits(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias-gamma code of integers n ≥ 1: 2·⌊log2 n⌋ + 1."""
    return 2.0 * np.floor(np.log2(n)) + 1.0


@dataclass(frozen=True)
class SymbolModel:
    """A static probability model for one stream of integers, fitted by counting.

    Over the observed range [lo, hi] of the training values each value v has count
    ``n_v + 1`` (add-one smoothing: values inside the range that never occurred stay codable);
    one more count goes to an escape symbol, so ``total = N + (hi − lo + 1) + 1``. A value
    inside the range costs −log2((n_v + 1) / total) bits. A value outside it (unseen in
    training) costs the escape, −log2(1 / total), plus one bit for the side (above or below)
    and the Elias-gamma code of its distance d ≥ 1 from the range: 2·⌊log2 d⌋ + 1 bits.
    """

    lo: int
    counts: np.ndarray  # (hi − lo + 1,) smoothed counts n_v + 1
    total: int  # Σ counts + 1 (the escape)

    @classmethod
    def fit(cls, values: np.ndarray) -> SymbolModel:
        values = np.asarray(values, np.int64)
        if values.size == 0:
            raise ValueError("a symbol model needs at least one training value")
        lo = int(values.min())
        counts = np.bincount(values - lo) + 1
        return cls(lo, counts, int(counts.sum()) + 1)

    @property
    def hi(self) -> int:
        return self.lo + len(self.counts) - 1

    def bits(self, values: np.ndarray) -> np.ndarray:
        """Ideal code length of each value, in bits."""
        values = np.asarray(values, np.int64)
        inside = (values >= self.lo) & (values <= self.hi)
        index = np.clip(values - self.lo, 0, len(self.counts) - 1)
        coded = np.log2(self.total) - np.log2(self.counts[index])
        distance = np.where(values > self.hi, values - self.hi, self.lo - values).clip(min=1)
        escaped = np.log2(self.total) + 1.0 + _gamma_bits(distance)
        return np.where(inside, coded, escaped)


def ideal_code_bits(train_symbols: np.ndarray, test_symbols: np.ndarray) -> np.ndarray:
    """(N, K) training and (M, K) test integers → (M,) bits: one ``SymbolModel`` per column, summed."""
    if train_symbols.ndim != 2 or test_symbols.ndim != 2 or train_symbols.shape[1] != test_symbols.shape[1]:
        raise ValueError(
            f"expected (N, K) and (M, K) symbols, got {train_symbols.shape} {test_symbols.shape}"
        )
    bits = np.zeros(len(test_symbols))
    for k in range(train_symbols.shape[1]):
        bits += SymbolModel.fit(train_symbols[:, k]).bits(test_symbols[:, k])
    return bits


class Pca:
    """Principal components of training images (pixels 0…255), by numpy SVD."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean = mean  # (784,)
        self.components = components  # (K, 784), orthonormal rows, by decreasing variance

    @classmethod
    def fit(cls, images: np.ndarray, *, max_components: int = 256) -> Pca:
        data = images.reshape(len(images), -1).astype(np.float64)
        mean = data.mean(axis=0)
        _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
        return cls(mean, vt[:max_components])

    def coefficients(self, images: np.ndarray, k: int) -> np.ndarray:
        if k > len(self.components):
            raise ValueError(f"{k} components asked for, {len(self.components)} fitted")
        data = images.reshape(len(images), -1).astype(np.float64)
        return (data - self.mean) @ self.components[:k].T

    def reconstruct(self, coefficients: np.ndarray) -> np.ndarray:
        k = coefficients.shape[1]
        pixels = self.mean + coefficients @ self.components[:k]
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(len(coefficients), 28, 28)


def _chunks(n: int, size: int = 5000) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def pca_roundtrip(
    pca: Pca, train_images: np.ndarray, test_images: np.ndarray, k: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """One PCA setting: (ideal bits per test image (N,), reconstructions (N, 28, 28))."""
    train_q = np.concatenate(
        [
            np.rint(pca.coefficients(train_images[s], k) / step).astype(np.int64)
            for s in _chunks(len(train_images))
        ]
    )
    test_q = np.rint(pca.coefficients(test_images, k) / step).astype(np.int64)
    bits = ideal_code_bits(train_q, test_q)
    return bits, pca.reconstruct(test_q * step)


def pca_settings(spec: Sequence[str] | None) -> tuple[tuple[int, float], ...]:
    """``["32:130", …]`` → ((32, 130.0), …); None → the defaults."""
    if not spec:
        return DEFAULT_PCA_SETTINGS
    settings = []
    for item in spec:
        k, _, step = item.partition(":")
        settings.append((int(k), float(step)))
    return tuple(settings)
