"""Distortion metrics and the row every evaluated method produces.

Definitions (uint8 pixels, peak 255, all images of a set compared with their originals):

* **PSNR (mean MSE)**: 10·log10(255² / MSE) with MSE averaged over every pixel of the set —
  ``latentwire.preprocess.psnr``, the definition used everywhere in latentwire. ∞ when lossless.
* **mean per-image PSNR**: the PSNR of each image on its own, averaged. An image reconstructed
  exactly counts as ``PSNR_CAP`` (100 dB; the highest finite value a 28×28 uint8 image can
  have is 77.1 dB, one pixel off by one), so the mean stays finite.
* **SSIM**: ``skimage.metrics.structural_similarity`` per image (data_range 255, its default
  7×7 uniform window), averaged over the images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from latentwire.preprocess import psnr

__all__ = ["PSNR_CAP", "Quality", "Row", "mean_image_psnr", "mean_ssim", "noisy_pixels", "quality"]

PSNR_CAP = 100.0  # dB, what an exactly reconstructed image counts as in the per-image mean


def per_image_psnr(reference: np.ndarray, test: np.ndarray, *, cap: float = PSNR_CAP) -> np.ndarray:
    """(N, H, W) uint8 pairs → (N,) PSNR in dB, identical images counted as ``cap``."""
    if reference.shape != test.shape or reference.ndim != 3:
        raise ValueError(f"expected two (N, H, W) stacks of one shape, got {reference.shape} {test.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(255.0**2 / mse)
    return np.where(mse == 0.0, cap, np.minimum(values, cap))


def mean_image_psnr(reference: np.ndarray, test: np.ndarray, *, cap: float = PSNR_CAP) -> float:
    return float(np.mean(per_image_psnr(reference, test, cap=cap)))


def mean_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean over images of each image's SSIM (skimage, data_range=255)."""
    if reference.shape != test.shape or reference.ndim != 3:
        raise ValueError(f"expected two (N, H, W) stacks of one shape, got {reference.shape} {test.shape}")
    return float(
        np.mean([structural_similarity(a, b, data_range=255) for a, b in zip(reference, test, strict=True)])
    )


def noisy_pixels(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise of std ``sigma`` on [0, 1], clipped, rounded back to uint8 (fixed seed).

    The same recipe as the trainer's ``noisy_pixels`` (latentwire_trainer.train), so with the
    same seed the denoiser sees the inputs its checkpoint metrics were measured on.
    """
    rng = np.random.default_rng(seed)
    noisy = images / 255.0 + rng.normal(0.0, sigma, images.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)


@dataclass(frozen=True)
class Quality:
    """How close reconstructions are to the originals, and whether they still read as digits."""

    psnr: float  # of the mean MSE; inf when lossless
    mean_psnr: float  # per-image PSNR (capped), averaged
    ssim: float
    accuracy: float  # the reference classifier on the reconstructions, fraction 0…1


def quality(reference: np.ndarray, test: np.ndarray, accuracy: float) -> Quality:
    return Quality(
        psnr(reference, test), mean_image_psnr(reference, test), mean_ssim(reference, test), accuracy
    )


@dataclass
class Row:
    """One line of the results: a method at one setting, measured on the test set."""

    method: str  # the family: "latentwire", "JPEG", "PCA", …
    setting: str  # e.g. "q3", "q=50", "k=64, step=160"
    bytes: float | None  # mean bytes per image as sent (a whole code or file); None: not a codec
    payload_bytes: float | None  # bytes without framing (our codes); None where not separable
    info_bytes: float | None  # information content (ideal code length) in bytes; None where unknown
    quality: Quality
    model_id: str | None = None
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def lossless(self) -> bool:
        return math.isinf(self.quality.psnr)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an infinite PSNR becomes null, with ``lossless`` true."""
        q = self.quality
        return {
            "method": self.method,
            "setting": self.setting,
            "bytes": self.bytes,
            "payload_bytes": self.payload_bytes,
            "info_bytes": self.info_bytes,
            "psnr": None if math.isinf(q.psnr) else q.psnr,
            "lossless": self.lossless,
            "mean_image_psnr": q.mean_psnr,
            "ssim": q.ssim,
            "accuracy": q.accuracy,
            "model_id": self.model_id,
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }
