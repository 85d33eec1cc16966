"""Fixtures shared by every test level."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from latentwire.checkpoint import save_checkpoint
from latentwire.codec import to_tensor
from latentwire.data import MnistSplit, load_mnist
from latentwire.entropy import FactorizedPrior
from latentwire.errors import DataUnavailableError
from latentwire.latent_codecs import FactorizedCodec, Uniform8Codec
from latentwire.nets import Decoder, Encoder, get_preset


@pytest.fixture(scope="session")
def mnist_test() -> MnistSplit:
    """The 10k MNIST test digits; skipped where absent, but CI (CI=true) must have them."""
    try:
        return load_mnist("test", download=False)
    except DataUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must fetch MNIST first (python -m latentwire.data): {exc}")
        pytest.skip(f"MNIST not present; run `python -m latentwire.data` ({exc})")


def make_checkpoint(
    directory: Path,
    *,
    seed: int = 0,
    preset: str = "tiny",
    level: int = 2,
    denoise: bool = False,
    retired_model_ids: Sequence[str] = (),
) -> Path:
    """An untrained (random-weight) but complete checkpoint pair: fast, and enough for format tests.

    ``tiny`` makes a v1 (8-bit) model; ``dense-tiny`` an entropy-coded model (the ladder format) at
    ``level``, replacing ``retired_model_ids`` there.
    """
    torch.manual_seed(seed)
    encoder, decoder = Encoder(get_preset(preset)), Decoder(get_preset(preset))
    if get_preset(preset).vector_latent:
        factorized = FactorizedCodec(FactorizedPrior(get_preset(preset).latent_dims).freeze())
        save_checkpoint(
            directory,
            encoder=encoder,
            decoder=decoder,
            codec=factorized.params.to_dict(),
            tables=factorized.tables(),
            level=level,
            denoise=denoise,
            metrics={"psnr": 9.0, "code_bytes": 9.0},
            retired_model_ids=retired_model_ids,
        )
        return directory
    sample = to_tensor(np.random.default_rng(seed).integers(0, 256, (16, 28, 28), dtype=np.uint8))
    with torch.no_grad():
        uniform8 = Uniform8Codec.fit(encoder(sample))
    save_checkpoint(
        directory,
        encoder=encoder,
        decoder=decoder,
        codec=uniform8.params.to_dict(),
        metrics={"psnr": 10.0, "code_bytes": 407.0},
    )
    return directory


@pytest.fixture
def checkpoint_factory() -> Callable[..., Path]:
    """``make_checkpoint`` for tests that need several or unusual checkpoints."""
    return make_checkpoint


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "tiny")


@pytest.fixture
def other_checkpoint(tmp_path: Path) -> Path:
    """Same architecture, other weights: a different model id."""
    return make_checkpoint(tmp_path / "other", seed=1)


@pytest.fixture
def ladder_dir(tmp_path: Path) -> Path:
    """A small ladder: v2 levels 1 and 2, a denoiser at level 2, and a v1 model."""
    root = tmp_path / "ladder"
    make_checkpoint(root / "q1", preset="dense-tiny", level=1, seed=11)
    make_checkpoint(root / "q2", preset="dense-tiny", level=2, seed=12)
    make_checkpoint(root / "q2-denoise", preset="dense-tiny", level=2, denoise=True, seed=13)
    make_checkpoint(root / "seed", preset="tiny", seed=14)
    return root
