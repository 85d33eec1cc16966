"""The trainer CLI, on tiny presets and a small subset (CI never retrains the shipped ladder)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentwire.bitstream import LADDER_FORMAT
from latentwire.checkpoint import DEFAULT_CHECKPOINT_DIR, read_meta
from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.nets import Decoder, Encoder, get_preset
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
        assert model.format_version == LADDER_FORMAT and model.meta.metrics["information_bits"] > 0
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
    conditional = ["--preset", "dense-tiny", "--prior", "conditional", "--out", out]
    assert train.main([*conditional, "--prior-hidden", "1025"]) == 2
    assert train.main([*conditional, "--prior-hidden", "-1"]) == 2


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("residual-tiny", ["--warmup", "4"]),
        ("spatial-tiny", ["--warmup", "4", "--output-bias", "mean"]),
        ("spatial-residual-tiny", ["--warmup", "4", "--output-bias", "mean"]),
    ],
)
def test_deeper_and_spatial_presets_with_a_wider_conditional_prior(
    tmp_path: Path, mnist_test: MnistSplit, preset: str, extra: list[str]
) -> None:
    """The residual and spatial families train, fold their gains and export like dense (the spatial
    family's (L, 7, 7) latent goes through the conditional model as a vector); options are stored."""
    out = tmp_path / "r"
    args = ["--preset", preset, "--loss", "mse", "--lmbda", "5,50", "--level", "5", *SMALL]
    options = ["--prior", "conditional", "--groups", "4", "--prior-hidden", "24", *extra]
    assert train.main([*args, *options, "--out", str(out)]) == 0
    sender, receiver = EncoderLadder.load(out), DecoderLadder.load(out)
    assert sorted(m.level for m in sender.levels()) == [5, 6]
    for model in sender.levels():
        assert model.meta.codec["hidden"] == 24 and model.meta.training["warmup"] == 4
        assert model.meta.preset["family"] == get_preset(preset).family
        pixels, _ = receiver.decompress(model.compress(mnist_test.images[:5]))
        assert pixels.shape == (5, 28, 28)


@torch.no_grad()
@pytest.mark.parametrize("name", ["dense-tiny", "spatial-tiny"])
def test_a_levels_gains_fold_into_the_networks(name: str) -> None:
    """Exported level = trained level: gain before rounding, inverse gain before decoding."""
    preset = get_preset(name)
    priors = [torch.nn.Identity(), torch.nn.Identity()]
    heads = train.RateHeads(priors, preset.latent_dims)
    model = train.Model(Encoder(preset), Decoder(preset), heads)
    torch.manual_seed(0)
    heads.log_gains.normal_()
    heads.log_inverse_gains.normal_()
    encoder, decoder = train.fold_gains(model, 1)
    images, latents = torch.rand(3, 1, 28, 28), torch.randn(3, preset.latent_dims)
    gain, inverse = heads.log_gains[1].exp(), heads.log_inverse_gains[1].exp()
    torch.testing.assert_close(encoder(images), model.encoder(images) * gain)
    torch.testing.assert_close(decoder(latents), model.decoder(latents * inverse))


def test_learning_rate_warms_up_then_follows_the_schedule() -> None:
    cosine = train.learning_rate_factor("cosine", warmup=4, steps=100)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 100)))
    assert cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    constant = train.learning_rate_factor("constant", warmup=0, steps=100)
    assert {constant(s) for s in (0, 1, 99, 100)} == {1.0}
    assert train.learning_rate_factor("cosine", warmup=0, steps=10)(0) == 1.0


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


def test_ladder_rungs_make_every_shipped_level() -> None:
    """Every rung's output together are the shipped ladder's directories."""
    made = {rung.out for rung in ladder.RUNGS}
    shipped = {p.parent.name for p in DEFAULT_CHECKPOINT_DIR.glob("*/encoder.safetensors")}
    assert made == shipped
    names = [rung.name for rung in ladder.RUNGS]  # q3-denoise starts from q3: q3 comes first
    assert names.index("q3") < names.index("q3-denoise")


def test_ladder_rungs_are_the_commands_that_made_the_shipped_levels() -> None:
    """Each rung's options, parsed, are those recorded in the checkpoints it makes (but where to)."""
    parser = train.build_parser()
    where = {"out", "seed", "threads", "device", "data_dir", "init_from"}

    def parsed(options: list[str]) -> dict[str, object]:
        return {k: v for k, v in vars(parser.parse_args(options)).items() if k not in where}

    for rung in ladder.RUNGS:
        rung_options = parsed([*rung.options.format(out="X").split(), "--out", "X"])
        command = read_meta(DEFAULT_CHECKPOINT_DIR / rung.out / "encoder.safetensors", "encoder").command
        assert command.startswith("latentwire-train "), rung.out
        assert parsed(shlex.split(command)[1:]) == rung_options, rung.out


def test_cosine_factor_is_torchs_cosine_schedule() -> None:
    """With no warm-up the schedule is CosineAnnealingLR's (closed form; it recurses: ~1e-14 apart)."""
    steps = 2000
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    factor = train.learning_rate_factor("cosine", warmup=0, steps=steps)
    for step in range(steps + 1):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * factor(step), rel=1e-9, abs=1e-18)
        optimizer.step()
        reference.step()


def test_noise_quantization_and_decoder_fine_tuning(tmp_path: Path, mnist_test: MnistSplit) -> None:
    """--quantization noise trains; --finetune-decoder changes the decoder only, after the run."""
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", *SMALL]
    plain, tuned = tmp_path / "plain", tmp_path / "tuned"
    assert train.main([*args, "--quantization", "noise", "--out", str(plain)]) == 0
    options = ["--quantization", "noise", "--finetune-decoder", "1"]
    assert train.main([*args, *options, "--out", str(tuned)]) == 0
    meta = read_meta(tuned / "decoder.safetensors", "decoder")
    assert meta.training["quantization"] == "noise" and meta.training["finetune_decoder"] == 1
    # same seed, same first epoch: the encoder (and so every code) is the one the plain run made
    plain_codes = EncoderLadder.load(plain).levels()[0].compress(mnist_test.images[:20])
    tuned_codes = EncoderLadder.load(tuned).levels()[0].compress(mnist_test.images[:20])
    assert [c[2:] for c in plain_codes] == [c[2:] for c in tuned_codes]  # payloads; the checks differ
    plain_pixels = DecoderLadder.load(plain).decompress(plain_codes)[0]
    tuned_pixels = DecoderLadder.load(tuned).decompress(tuned_codes)[0]
    assert not np.array_equal(plain_pixels, tuned_pixels)  # the decoder moved


def test_the_entropy_model_refit_changes_the_entropy_model_only(
    tmp_path: Path, mnist_test: MnistSplit
) -> None:
    """--finetune-prior, after the run: the same latents and the same decoder, other codes."""
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", "--shift", "1", *SMALL]
    plain, refit = tmp_path / "plain", tmp_path / "refit"
    assert train.main([*args, "--out", str(plain)]) == 0
    assert train.main([*args, "--finetune-prior", "1", "--out", str(refit)]) == 0
    assert read_meta(refit / "encoder.safetensors", "encoder").training["finetune_prior"] == 1
    senders = [EncoderLadder.load(path).levels()[0] for path in (plain, refit)]
    images = mnist_test.images[:20]
    latents = [sender.latents(images) for sender in senders]
    assert torch.equal(latents[0], latents[1])  # the encoder (and its gains) did not move
    codes = [sender.compress(images) for sender in senders]
    assert [c[2:] for c in codes[0]] != [c[2:] for c in codes[1]]  # the entropy model did
    receivers = [DecoderLadder.load(path).levels()[0] for path in (plain, refit)]
    values = receivers[0].latent_codec.decompress(codes[0][0][2:])
    assert np.array_equal(values, receivers[1].latent_codec.decompress(codes[1][0][2:]))
    pixels = [receiver.decode_latents(values[None]) for receiver in receivers]
    assert np.array_equal(pixels[0], pixels[1])  # the decoder did not move


def test_decoder_options_need_a_vector_latent(tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    assert train.main(["--preset", "tiny", "--finetune-decoder", "1", "--out", out]) == 2
    assert train.main(["--preset", "tiny", "--quantization", "noise", "--out", out]) == 2
    assert train.main(["--preset", "dense-tiny", "--finetune-decoder", "-1", "--out", out]) == 2
    assert train.main(["--preset", "tiny", "--finetune-prior", "1", "--out", out]) == 2
    assert train.main(["--preset", "dense-tiny", "--finetune-prior", "-1", "--out", out]) == 2
    assert train.main(["--preset", "dense-tiny", "--warmup", "-1", "--out", out]) == 2


def test_output_bias_starts_at_the_mean_pixel(tmp_path: Path, mnist_test: MnistSplit) -> None:
    """--output-bias mean: the decoder's first image is the mean grey, for every family; stored."""
    images = torch.from_numpy(mnist_test.images[:256]).float().div(255).unsqueeze(1)
    mean = images.mean().item()
    for name in ("tiny", "dense-tiny", "residual-tiny"):
        decoder = Decoder(get_preset(name))
        train.start_at_mean_pixel(decoder, images)
        output = [m for m in decoder.net if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
        assert output.bias is not None and torch.allclose(torch.sigmoid(output.bias), torch.tensor(mean))
    out = tmp_path / "m"
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", "--output-bias", "mean", *SMALL]
    assert train.main([*args, "--out", str(out)]) == 0
    assert read_meta(out / "decoder.safetensors", "decoder").training["output_bias"] == "mean"
    with pytest.raises(SystemExit):
        train.main(["--preset", "dense-tiny", "--output-bias", "zero", "--out", str(out)])
    assert train.main([*args, "--init-from", str(out), "--out", str(tmp_path / "x")]) == 2  # not both


def test_shift_moves_each_digit_by_its_own_offset_within_the_bound() -> None:
    """--shift N: every training digit moved by a whole-pixel offset in [-N, N]², zeros moved in."""
    digits = torch.zeros(400, 1, 28, 28)
    digits[:, 0, 8:20, 9:19] = torch.rand(400, 12, 10) + 0.1  # room to move: nothing falls off
    generator = torch.Generator().manual_seed(0)
    assert train.shift_randomly(digits, 0, generator) is digits
    moved = train.shift_randomly(digits, 2, generator)
    offsets = set()
    for digit, result in zip(digits, moved, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(digit.roll((dy, dx), (1, 2)), result)
        ]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) == 25  # every offset occurs, (0, 0) among them
    blank = train.shift_randomly(torch.ones(200, 1, 28, 28), 3, torch.Generator().manual_seed(1))
    areas = {(28 - abs(dy)) * (28 - abs(dx)) for dy in range(-3, 4) for dx in range(-3, 4)}
    sums = {int(image.sum()) for image in blank}
    assert sums <= areas and len(sums) > 1  # zeros come in from the edges, ones never wrap round


def test_shift_is_recorded_and_checked(tmp_path: Path) -> None:
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", *SMALL]
    plain, shifted = tmp_path / "plain", tmp_path / "shifted"
    assert train.main([*args, "--out", str(plain)]) == 0
    assert train.main([*args, "--shift", "2", "--out", str(shifted)]) == 0
    assert read_meta(shifted / "decoder.safetensors", "decoder").training["shift"] == 2
    metrics = [read_meta(run / "decoder.safetensors", "decoder").metrics for run in (plain, shifted)]
    assert metrics[0] != metrics[1]  # other training images, another model
    for bad in ("-1", "8"):
        assert train.main([*args, "--shift", bad, "--out", str(tmp_path / "x")]) == 2


def test_retires_is_recorded_in_both_halves_and_checked(tmp_path: Path, mnist_test: MnistSplit) -> None:
    args = ["--preset", "dense-tiny", "--loss", "mse", "--lmbda", "20", "--level", "2", *SMALL]
    out = tmp_path / "q2"
    assert train.main([*args, "--retires", "00000000000000a1", "--out", str(out)]) == 0
    for half in ("encoder", "decoder"):
        assert read_meta(out / f"{half}.safetensors", half).retired_model_ids == ["00000000000000a1"]
    sender, receiver = EncoderLadder.load(out), DecoderLadder.load(out)
    assert receiver.decompress(sender.default.compress(mnist_test.images[:5]))[0].shape == (5, 28, 28)
    assert train.main([*args, "--retires", "not-an-id", "--out", str(tmp_path / "x")]) == 2
    assert train.main([*args[:-len(SMALL)], "--lmbda", "5,20", "--retires", "00000000000000a1",
                       "--out", str(tmp_path / "y")]) == 2  # fmt: skip
    assert (
        train.main(["--preset", "tiny", "--retires", "00000000000000a1", "--out", str(tmp_path / "z")]) == 2
    )
