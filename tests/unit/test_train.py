"""The trainer CLI, on tiny presets and a small subset (CI never retrains the shipped ladder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from latentwire.checkpoint import read_meta
from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire_trainer import ladder, train

SMALL = [
    "--epochs",
    "1",
    "--limit-train",
    "512",
    "--limit-test",
    "200",
    "--batch-size",
    "64",
    "--threads",
    "1",
]


def test_seed_family_writes_split_checkpoints_and_figure(tmp_path: Path, mnist_test: MnistSplit) -> None:
    out = tmp_path / "tiny"
    assert train.main(["--preset", "tiny", *SMALL, "--out", str(out)]) == 0
    meta = read_meta(out / "encoder.safetensors", "encoder")
    assert meta.preset["name"] == "tiny" and meta.codec["kind"] == "uniform8" and meta.level == 0
    assert meta.training["epochs"] == 1 and meta.command.startswith("latentwire-train --preset tiny")
    assert meta.data_checksum and {"torch", "numpy", "python"} <= set(meta.versions)
    assert meta.metrics["test_images"] == 200 and meta.metrics["code_bytes"] == 15 + 8 * 49
    with Image.open(out / "reconstructions.png") as figure:
        assert figure.size[0] > 28 * 10


def test_rate_training_writes_one_checkpoint_per_level(tmp_path: Path, mnist_test: MnistSplit) -> None:
    out = tmp_path / "ladder"
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "5,50", "--level", "2", *SMALL]
    assert train.main([*args, "--out", str(out)]) == 0
    sender, receiver = EncoderLadder.load(out), DecoderLadder.load(out)
    assert sorted(m.level for m in sender.levels()) == [2, 3]
    for model in sender.levels():
        assert model.format_version == 3 and model.meta.metrics["information_bits"] > 0
        # the mean code is within a byte of the information content, plus 2 bytes of framing
        assert model.meta.metrics["payload_bytes"] < model.meta.metrics["information_bits"] / 8 + 1
        pixels, _ = receiver.decompress(model.compress(mnist_test.images[:5]))
        assert pixels.shape == (5, 28, 28)


def test_conditional_prior_trains_and_exports_its_codec(tmp_path: Path, mnist_test: MnistSplit) -> None:
    out = tmp_path / "c2"
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "5", "--level", "2", *SMALL]
    assert train.main([*args, "--prior", "conditional", "--groups", "4", "--out", str(out)]) == 0
    meta = read_meta(out / "decoder.safetensors", "decoder")
    assert meta.codec["kind"] == "conditional" and meta.codec["groups"] == 4 and meta.level == 2
    assert meta.training["prior"] == "conditional" and meta.metrics["information_bits"] > 0
    assert meta.metrics["payload_bytes"] < meta.metrics["information_bits"] / 8 + 1
    # the float model's rate (on the rounded test latents) and the integer model's are close
    assert (
        abs(meta.metrics["prior_bits"] - meta.metrics["information_bits"]) < 0.1 * meta.metrics["prior_bits"]
    )
    model = EncoderLadder.load(tmp_path).levels()[0]
    pixels, _ = DecoderLadder.load(tmp_path).decompress(model.compress(mnist_test.images[:5]))
    assert pixels.shape == (5, 28, 28)


def test_conditional_prior_options_are_checked(tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    assert train.main(["--preset", "tiny", "--prior", "conditional", "--out", out]) == 2
    assert (
        train.main(["--preset", "dense-tiny", "--prior", "conditional", "--groups", "9", "--out", out]) == 2
    )


def test_same_seed_same_metrics(tmp_path: Path, mnist_test: MnistSplit) -> None:
    metrics = []
    for run in ("a", "b"):
        assert train.main(["--preset", "tiny", *SMALL, "--seed", "3", "--out", str(tmp_path / run)]) == 0
        metrics.append(read_meta(tmp_path / run / "decoder.safetensors", "decoder").metrics)
    assert metrics[0] == metrics[1]


def test_denoiser_records_the_noisy_input_psnr(tmp_path: Path, mnist_test: MnistSplit) -> None:
    out = tmp_path / "dn"
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", "--noise-sigma", "0.4", *SMALL]
    assert train.main([*args, "--out", str(out)]) == 0
    meta = read_meta(out / "encoder.safetensors", "encoder")
    assert meta.denoise and 0 < meta.metrics["psnr_noisy_input"] < 15


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        train.main(["--lmbda", "1,x", "--out", str(tmp_path)])
    assert train.main(["--preset", "tiny", "--lmbda", "1,2", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        ladder.main(["--only", "q9"])


def test_ladder_rungs_are_valid_trainer_options() -> None:
    parser = train.build_parser()
    for rung in ladder.RUNGS:
        args = parser.parse_args([*rung.options.format(out="X").split(), "--out", "X"])
        assert args.epochs >= 1
