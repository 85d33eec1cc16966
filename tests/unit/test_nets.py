"""Model shapes and the preset registry."""

from __future__ import annotations

import pytest
import torch

from latentwire.nets import (
    PRESETS,
    BottleneckBlock,
    Decoder,
    Encoder,
    Preset,
    ResidualBlock,
    get_preset,
    preset_from_dict,
    register_preset,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
@torch.no_grad()
def test_encoder_decoder_shapes(name: str) -> None:
    preset = get_preset(name)
    images = torch.rand(3, 1, 28, 28)
    latents = Encoder(preset)(images)
    assert latents.shape == (3, *preset.latent_shape)
    out = Decoder(preset)(latents)
    assert out.shape == (3, 1, 28, 28)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # sigmoid output


@torch.no_grad()
def test_seed_is_the_tutorial_network() -> None:
    preset = get_preset("seed")
    assert preset.latent_shape == (32, 7, 7)  # 1,568 values per image
    enc, dec = Encoder(preset), Decoder(preset)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)),
        (32, 32, (3, 3)),
    ]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules()) == 2
    transposed = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(t.in_channels, t.out_channels, t.stride) for t in transposed] == [(32, 32, (2, 2))] * 2
    assert isinstance(list(dec.modules())[-1], torch.nn.Sigmoid)
    # latents are post-ReLU, so never negative
    assert float(enc(torch.rand(2, 1, 28, 28)).min()) >= 0.0


def test_registry_round_trip_and_errors() -> None:
    preset = get_preset("tiny")
    assert preset_from_dict(preset.to_dict()) == preset
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_preset(Preset(name="seed", family="seed"))
    with pytest.raises(ValueError, match="unknown preset fields"):
        preset_from_dict({**preset.to_dict(), "surprise": 1})
    with pytest.raises(ValueError, match="unknown family"):
        Encoder(Preset(name="x", family="martian"))
    with pytest.raises(ValueError, match="49 × latent_channels values, not 100"):
        Preset(name="x", family="spatial", latent_channels=2, latent_dims=100)
    with pytest.raises(ValueError, match=r"block 'bottleneck': one of .* in the residual families"):
        Preset(name="x", family="spatial", latent_channels=1, latent_dims=49, block="bottleneck")
    with pytest.raises(ValueError, match="block 'huge'"):
        Preset(name="x", family="residual", latent_dims=8, block="huge")
    # a checkpoint written before a field existed stores no value for it: it gets the default
    old = {k: v for k, v in get_preset("spatial-4").to_dict().items() if k != "block"}
    assert preset_from_dict(old) == get_preset("spatial-4")


@torch.no_grad()
def test_residual_family_is_the_dense_network_with_residual_blocks() -> None:
    residual, dense = get_preset("residual-tiny"), get_preset("dense-tiny")
    assert residual.vector_latent and dense.vector_latent and not get_preset("seed").vector_latent
    assert residual.latent_shape == dense.latent_shape == (8,)
    # C then 2C channels on the way down, 2C then C on the way up
    for half, widths in ((Encoder, [8, 16]), (Decoder, [16, 8])):
        blocks = [m for m in half(residual).modules() if isinstance(m, ResidualBlock)]
        assert [b.body[0].in_channels for b in blocks] == widths
        # without the blocks, the same layers as dense
        plain = [type(m) for m in half(residual).net if not isinstance(m, ResidualBlock)]
        assert plain == [type(m) for m in half(dense).net]
    block = ResidualBlock(4)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    biases = [conv.bias for conv in convs if conv.bias is not None]
    assert len(convs) == len(biases) == 2
    with torch.no_grad():
        for tensor in [conv.weight for conv in convs] + biases:
            torch.nn.init.zeros_(tensor)
        x = torch.randn(2, 4, 5, 5)
        assert torch.equal(block(x), x)  # a zero branch: the identity
        torch.nn.init.ones_(biases[1])
        assert torch.equal(block(x), x + 1)  # the branch is added to the input


@torch.no_grad()
def test_bottleneck_blocks_take_the_basic_blocks_places_for_a_fifth_of_the_arithmetic() -> None:
    basic, bottleneck = get_preset("spatial-residual-2"), get_preset("spatial-residual-2-bottleneck")
    for half in (Encoder, Decoder):
        expected = [BottleneckBlock if type(m) is ResidualBlock else type(m) for m in half(basic).net]
        assert [type(m) for m in half(bottleneck).net] == expected
    block = BottleneckBlock(64)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (64, 32, (1, 1)),
        (32, 32, (3, 3)),
        (32, 64, (1, 1)),
    ]
    weights = sum(c.weight.numel() for c in convs)  # multiply-adds per position
    assert weights * 5 < sum(
        c.weight.numel() for c in ResidualBlock(64).modules() if isinstance(c, torch.nn.Conv2d)
    )
    x = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(block(x), x + block.body(x))
