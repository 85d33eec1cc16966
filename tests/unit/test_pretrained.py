"""The shipped ladder: complete, small, and reaching the metrics its checkpoints record."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from latentwire.checkpoint import DEFAULT_CHECKPOINT_DIR, read_meta
from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder, checkpoint_files
from latentwire.preprocess import psnr

LEVELS = [1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def ladders() -> tuple[EncoderLadder, DecoderLadder]:
    return EncoderLadder.load(), DecoderLadder.load()


def test_every_half_is_small_verified_and_paired() -> None:
    encoders = checkpoint_files(DEFAULT_CHECKPOINT_DIR, "encoder")
    decoders = checkpoint_files(DEFAULT_CHECKPOINT_DIR, "decoder")
    assert [p.parent.name for p in encoders] == [p.parent.name for p in decoders]
    assert {p.parent.name for p in encoders} == {"q1", "q2", "q3", "q4", "q5", "q6", "q3-denoise", "seed"}
    for enc, dec in zip(encoders, decoders, strict=True):
        assert enc.stat().st_size <= 5 * 1024 * 1024 and dec.stat().st_size <= 5 * 1024 * 1024
        enc_meta, dec_meta = read_meta(enc, "encoder"), read_meta(dec, "decoder")
        assert enc_meta.model_id == dec_meta.model_id
        assert enc_meta.metrics["test_images"] == 10_000
        assert enc_meta.command.startswith("latentwire-train")


def test_levels_trade_bytes_for_quality(ladders: tuple[EncoderLadder, DecoderLadder]) -> None:
    sender, _ = ladders
    assert sender.default_quality == 4  # the smallest level at ≥ 24 dB
    assert sender.default.meta.metrics["psnr"] >= 24.0
    rungs = [sender.select(quality=q).meta.metrics for q in LEVELS]
    assert all(a["code_bytes"] < b["code_bytes"] for a, b in itertools.pairwise(rungs))
    assert all(a["psnr"] < b["psnr"] for a, b in itertools.pairwise(rungs))
    assert (
        sender.select(quality=0).format_version == 1 and sender.select(quality=0).meta.metrics["psnr"] >= 24.0
    )
    assert sender.select(denoise=True).level == 3


@pytest.mark.parametrize("quality", [0, *LEVELS])
def test_shipped_levels_reach_their_recorded_metrics(
    quality: int, ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    """Every level, on the full 10k test set, reproduces the bytes and PSNR its checkpoint records."""
    sender, receiver = ladders
    compressor = sender.select(quality=quality)
    images = mnist_test.images
    codes = [c for i in range(0, len(images), 2000) for c in compressor.compress(images[i : i + 2000])]
    decoded = np.concatenate(
        [receiver.decompress(codes[i : i + 2000])[0] for i in range(0, len(codes), 2000)]
    )
    recorded = compressor.meta.metrics
    assert np.mean([len(c) for c in codes]) == pytest.approx(recorded["code_bytes"], abs=1e-9)
    assert psnr(images, decoded) == pytest.approx(recorded["psnr"], abs=0.01)
