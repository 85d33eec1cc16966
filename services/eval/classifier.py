"""The reference digit classifier: does a reconstruction still read as the digit it was?

A small CNN (two 3×3 conv + batch-norm + ReLU + 2×2 max-pool blocks, a dense layer with
dropout, 10 outputs), trained on the MNIST training set with Adam and a cosine learning-rate
decay. It is trained once and cached as ``digits-<key>.safetensors`` with a JSON sidecar in
``default_data_dir().parent / "classifier"``; ``key`` hashes the training data (images and
labels) and the hyperparameters, so a change of either trains a new one. Trained on the full
training set, it must reach 99% on the original test images, or no model is cached and
``ClassifierError`` is raised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from latentwire.data import default_data_dir

__all__ = [
    "MIN_ACCURACY",
    "ClassifierConfig",
    "ClassifierError",
    "DigitClassifier",
    "default_cache_dir",
    "load_or_train",
]

log = logging.getLogger(__name__)

MIN_ACCURACY = 0.99  # on the original test images, when trained on the full training set
_ARCH = "cnn-bn/1"  # bump when DigitNet changes: it is part of the cache key


def default_cache_dir() -> Path:
    return default_data_dir().parent / "classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyperparameters; every field is part of the cache key."""

    channels: tuple[int, int] = (16, 32)
    hidden: int = 128
    dropout: float = 0.25
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    train_limit: int = 0  # first N training images only (0: all); skips the accuracy check

    def to_dict(self) -> dict[str, Any]:
        return {"arch": _ARCH, **dataclasses.asdict(self), "channels": list(self.channels)}


class ClassifierError(RuntimeError):
    """The classifier could not be trained to the required accuracy, or its cache is unusable."""


class DigitNet(nn.Module):
    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        c1, c2 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


class DigitClassifier:
    """A trained ``DigitNet`` in eval mode, with what its sidecar says about it."""

    def __init__(self, net: DigitNet, info: dict[str, Any]) -> None:
        self.net = net.eval().requires_grad_(False)
        self.info = info

    @property
    def key(self) -> str:
        return str(self.info["key"])

    @torch.inference_mode()
    def predict(self, images: np.ndarray, *, batch: int = 500) -> np.ndarray:
        """uint8 (N, 28, 28) → predicted digits (N,)."""
        out = [self.net(_tensor(images[i : i + batch])).argmax(dim=1) for i in range(0, len(images), batch)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(images) == labels)) if len(images) else math.nan


def cache_key(config: ClassifierConfig, images: np.ndarray, labels: np.ndarray) -> str:
    """Hash of the training data actually used and the hyperparameters."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


def train(config: ClassifierConfig, images: np.ndarray, labels: np.ndarray) -> DigitNet:
    torch.manual_seed(config.seed)
    net = DigitNet(config)
    x, y = _tensor(images), torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    generator = torch.Generator().manual_seed(config.seed)
    net.train()
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        total, started = 0.0, time.perf_counter()
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            loss = F.cross_entropy(net(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(index)
        log.info(
            "classifier epoch %d/%d: loss %.4f (%.0f s)",
            epoch, config.epochs, total / len(x), time.perf_counter() - started,
        )  # fmt: skip
    return net.eval()


def _write_atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_cached(weights: Path, sidecar: Path, key: str, config: ClassifierConfig) -> DigitClassifier | None:
    if not (weights.is_file() and sidecar.is_file()):
        return None
    try:
        info = json.loads(sidecar.read_text())
        if info.get("key") != key or info.get("config") != config.to_dict():
            log.warning("classifier cache %s does not match its key; retraining", sidecar)
            return None
        net = DigitNet(config)
        net.load_state_dict(load_file(str(weights)), strict=True)
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable JSON or weights
        log.warning("classifier cache %s is unusable (%s); retraining", weights, exc)
        return None
    return DigitClassifier(net, info)


def load_or_train(
    config: ClassifierConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    cache_dir: Path | None = None,
) -> DigitClassifier:
    """The cached classifier for this data and config, trained (and cached) first if needed.

    ``train_images`` is the whole training split; ``config.train_limit`` takes its first N.
    The accuracy recorded in the sidecar is on ``test_images`` (pass the whole test split).
    """
    images = train_images[: config.train_limit or None]
    labels = train_labels[: config.train_limit or None]
    key = cache_key(config, images, labels)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    weights, sidecar = directory / f"digits-{key}.safetensors", directory / f"digits-{key}.json"
    cached = _load_cached(weights, sidecar, key, config)
    if cached is not None:
        log.info(
            "classifier %s from %s (%.2f%% on %d original test images)",
            key, weights, 100 * cached.info["test_accuracy"], cached.info["test_images"],
        )  # fmt: skip
        return cached
    log.info("training the reference classifier on %d images (%d epochs) …", len(images), config.epochs)
    started = time.perf_counter()
    net = train(config, images, labels)
    seconds = time.perf_counter() - started
    classifier = DigitClassifier(net, {})
    accuracy = classifier.accuracy(test_images, test_labels)
    log.info(
        "classifier: %.2f%% on %d original test images (%.0f s)", 100 * accuracy, len(test_images), seconds
    )
    if config.train_limit == 0 and accuracy < MIN_ACCURACY:
        raise ClassifierError(
            f"the reference classifier reached {100 * accuracy:.2f}% on the test images; "
            f"at least {100 * MIN_ACCURACY:.0f}% is required (nothing was cached)"
        )
    classifier.info = {
        "key": key,
        "config": config.to_dict(),
        "train_images": len(images),
        "test_images": len(test_images),
        "test_accuracy": accuracy,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    _write_atomic(weights, lambda tmp: save_file(state, tmp))
    _write_atomic(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(classifier.info, indent=2) + "\n"))
    log.info("classifier cached as %s", weights)
    return classifier
