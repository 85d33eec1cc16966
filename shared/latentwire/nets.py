"""Network definitions: named architecture presets and the Encoder / Decoder they build.

Five families: ``seed`` (the tutorial's convolutional autoencoder, 8-bit latents, code format
v1), ``dense`` (built for rate: a narrow vector bottleneck entropy-coded with a learned prior,
the ladder code format; after the TensorFlow Compression MNIST model), ``residual`` (the dense
bottleneck with a residual block after each convolution: more capacity at the same latent),
``spatial`` (no dense layer: a (L, 7, 7) latent map, flattened channel by channel, so that the
conditional entropy model's groups condition each channel on the ones before it) and
``spatial-residual`` (the spatial network with the residual family's blocks, in their places)::

    dense:  image → Conv 5×5/2 (C) → Conv 5×5/2 (2C) → Linear(98C → H) → Linear(H → K) → latent (N, K)
            latent → Linear(K → H) → Linear(H → 98C) → ConvT 5×5/2 (C) → ConvT 5×5/2 (1) → sigmoid

    residual: the same, with ResidualBlock(C) after the first convolution and ResidualBlock(2C)
            after the second; ResidualBlock(2C) before the first transposed convolution and
            ResidualBlock(C) before the second (``block="bottleneck"``: BottleneckBlock instead,
            a 1×1 convolution to half the width, a 3×3, a 1×1 back: ~1/5 of the arithmetic)

    spatial: image → Conv 5×5/2 (C) → Conv 5×5/2 (2C) → Conv 3×3 (L) → flatten → Scale → latent (N, 49L)
            latent → Scale → (L, 7, 7) → Conv 3×3 (2C) → ConvT 5×5/2 (C) → ConvT 5×5/2 (1) → sigmoid

    (ReLU after every hidden layer, none on the latent.)

A preset is a frozen dataclass registered by name. Checkpoints store the preset's fields, and
the networks are rebuilt from them (never guessed from tensor shapes).

The ``seed`` preset is the tutorial's Keras autoencoder, layer for layer::

    image (N, 1, 28, 28) in [0, 1]
      Conv2d(1→32, 3×3, same) + ReLU → MaxPool 2      (N, 32, 14, 14)
      Conv2d(32→32, 3×3, same) + ReLU → MaxPool 2     (N, 32, 7, 7)   ← latent, 1,568 values ≥ 0
      ConvTranspose2d(32→32, 3×3, stride 2) + ReLU    (N, 32, 14, 14)
      ConvTranspose2d(32→32, 3×3, stride 2) + ReLU    (N, 32, 28, 28)
      Conv2d(32→1, 3×3, same) + sigmoid               (N, 1, 28, 28)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "PRESETS",
    "Decoder",
    "Encoder",
    "Preset",
    "ResidualBlock",
    "Scale",
    "get_preset",
    "preset_from_dict",
    "register_preset",
]

IMAGE_SIZE = 28
_CELLS = (IMAGE_SIZE // 4) ** 2  # positions of the 7×7 map under two stride-2 layers
_SPATIAL = ("spatial", "spatial-residual")  # the families with a (L, 7, 7) latent map
_RESIDUAL = ("residual", "spatial-residual")  # the families with residual blocks
_BLOCK_KINDS = ("basic", "bottleneck")


@dataclass(frozen=True)
class Preset:
    """An architecture: everything needed to rebuild the encoder and decoder."""

    name: str
    family: str  # selects the builder below
    channels: int = 32  # feature maps in the hidden convolutions
    latent_channels: int = 32  # seed: channels of the (C, 7, 7) latent
    hidden: int = 0  # dense: width of the fully connected layer before the bottleneck
    latent_dims: int = 0  # dense: K, the length of the latent vector (spatial: 49 × latent_channels)
    block: str = "basic"  # the residual families' blocks: "basic" (ResidualBlock) or "bottleneck"

    def __post_init__(self) -> None:
        if self.family in _SPATIAL and self.latent_dims != self.latent_channels * _CELLS:
            raise ValueError(
                f"a spatial latent has {_CELLS} × latent_channels values, not {self.latent_dims}"
            )
        if self.block not in _BLOCK_KINDS or (self.block != "basic" and self.family not in _RESIDUAL):
            raise ValueError(f"block {self.block!r}: one of {_BLOCK_KINDS}, in the residual families")

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one image's latent: (C, H, W) for seed, (K,) for the vector-latent families."""
        if self.family == "seed":
            return (self.latent_channels, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
        if self.vector_latent:
            return (self.latent_dims,)
        raise ValueError(f"unknown family {self.family!r}")

    @property
    def vector_latent(self) -> bool:
        """A (K,) latent (a vector, or a flattened 7×7 map): entropy coded, trained for rate."""
        return self.family in ("dense", "residual", *_SPATIAL)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset to the registry (names are unique)."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def preset_from_dict(fields: dict[str, Any]) -> Preset:
    """Rebuild a preset from the fields a checkpoint stored (unknown fields are an error)."""
    known = {f.name for f in dataclasses.fields(Preset)}
    unknown = set(fields) - known
    if unknown:
        raise ValueError(f"unknown preset fields {sorted(unknown)}")
    return Preset(**fields)


# The tutorial's network (see the module docstring).
register_preset(Preset(name="seed", family="seed"))
# A quarter-width seed for fast tests and CI smoke training.
register_preset(Preset(name="tiny", family="seed", channels=8, latent_channels=8))
# Built for rate: a narrow vector bottleneck whose integers are entropy coded (the quality ladder).
register_preset(Preset(name="dense", family="dense", channels=32, hidden=256, latent_dims=64))
# The same shape, small: for tests and CI smoke training of the entropy-coded path.
register_preset(Preset(name="dense-tiny", family="dense", channels=8, hidden=32, latent_dims=8))
# Half the latent values: the low levels, where fewer, busier values cost fewer bits (issue #10).
register_preset(Preset(name="dense-32", family="dense", channels=32, hidden=256, latent_dims=32))
# The same with 512 hidden units each way (issue #10, third round). Not in the shipped ladder:
# +0.15 dB at level 2 for a 1.5x slower encoder, and nothing on top of --shift 1 (docs/rd.md).
register_preset(Preset(name="dense-32-h512", family="dense", channels=32, hidden=512, latent_dims=32))
# The dense bottleneck with deeper transforms: residual blocks at 7×7 and 14×14 (issue #10).
# Not in the shipped ladder: +0.6 dB at the same rate, but the encoder is 2.7× slower (docs/rd.md).
register_preset(Preset(name="residual", family="residual", channels=32, hidden=256, latent_dims=64))
register_preset(Preset(name="residual-32", family="residual", channels=32, hidden=256, latent_dims=32))
register_preset(Preset(name="residual-tiny", family="residual", channels=8, hidden=32, latent_dims=8))
# A 7×7 latent map instead of a vector: where a stroke is stays where it is (issue #10, tenth and
# eleventh rounds). spatial-residual-2-bottleneck is q6; the others are docs/rd.md §14-15's probes
# (spatial-4 was q6 in the tenth round).
for _name, _family, _channels, _maps, _block in (
    ("spatial-2", "spatial", 32, 2, "basic"),
    ("spatial-4", "spatial", 32, 4, "basic"),
    ("spatial-8", "spatial", 32, 8, "basic"),
    ("spatial-residual-2", "spatial-residual", 32, 2, "basic"),
    ("spatial-residual-2-bottleneck", "spatial-residual", 32, 2, "bottleneck"),
    ("spatial-tiny", "spatial", 8, 2, "basic"),
    ("spatial-residual-tiny", "spatial-residual", 8, 2, "bottleneck"),
):
    register_preset(
        Preset(
            _name,
            _family,
            channels=_channels,
            latent_channels=_maps,
            latent_dims=_maps * _CELLS,
            block=_block,
        )
    )


def _seed_encoder(p: Preset) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, p.channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, C, 14, 14)
        nn.Conv2d(p.channels, p.latent_channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, latent_channels, 7, 7)
    )


def _seed_decoder(p: Preset) -> nn.Sequential:
    # padding=1, output_padding=1 doubles the size exactly, like Keras' padding="same" at stride 2.
    return nn.Sequential(
        nn.ConvTranspose2d(p.latent_channels, p.channels, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(),  # (N, C, 14, 14)
        nn.ConvTranspose2d(p.channels, p.channels, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(),  # (N, C, 28, 28)
        nn.Conv2d(p.channels, 1, 3, padding=1),
        nn.Sigmoid(),
    )


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))): 3×3, same size and width (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.body(x)
        return out


class BottleneckBlock(nn.Module):
    """x + conv1×1(relu(conv3×3(relu(conv1×1(x))))), half the width inside (He et al. 2016).

    A fifth of ResidualBlock's multiply-adds at the same width, for most of its quality in the
    spatial network (docs/rd.md §15).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, inner, 1),
            nn.ReLU(),
            nn.Conv2d(inner, inner, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(inner, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.body(x)
        return out


class Scale(nn.Module):
    """x × w, one weight per latent value: where a trained level's gains fold into a spatial net.

    A gain per latent value sets that value's quantization step; in a vector net it folds into the
    bottleneck's linear layer, but a convolution shares its weights across positions.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def _blocks(p: Preset, channels: int) -> list[nn.Module]:
    """A residual block of ``channels`` in the residual families, nothing in the others."""
    if p.family not in _RESIDUAL:
        return []
    return [_BLOCKS[p.block](channels)]


def _downsample(p: Preset) -> list[nn.Module]:
    """Image → (N, 2C, 7, 7): two strided convolutions (with residual blocks in that family)."""
    return [
        nn.Conv2d(1, p.channels, 5, stride=2, padding=2),
        nn.ReLU(),  # (N, C, 14, 14)
        *_blocks(p, p.channels),
        nn.Conv2d(p.channels, 2 * p.channels, 5, stride=2, padding=2),
        nn.ReLU(),  # (N, 2C, 7, 7)
        *_blocks(p, 2 * p.channels),
    ]


def _upsample(p: Preset) -> list[nn.Module]:
    """(N, 2C, 7, 7) → image: two transposed convolutions, the mirror of ``_downsample``."""
    return [
        *_blocks(p, 2 * p.channels),
        nn.ConvTranspose2d(2 * p.channels, p.channels, 5, stride=2, padding=2, output_padding=1),
        nn.ReLU(),  # (N, C, 14, 14)
        *_blocks(p, p.channels),
        nn.ConvTranspose2d(p.channels, 1, 5, stride=2, padding=2, output_padding=1),
        nn.Sigmoid(),  # (N, 1, 28, 28)
    ]


def _vector_encoder(p: Preset) -> nn.Sequential:
    return nn.Sequential(
        *_downsample(p),
        nn.Flatten(),
        nn.Linear(2 * p.channels * 49, p.hidden),
        nn.ReLU(),
        nn.Linear(p.hidden, p.latent_dims),  # (N, K): no activation, the prior models its range
    )


def _vector_decoder(p: Preset) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(p.latent_dims, p.hidden),
        nn.ReLU(),
        nn.Linear(p.hidden, 2 * p.channels * 49),
        nn.ReLU(),
        nn.Unflatten(1, (2 * p.channels, 7, 7)),
        *_upsample(p),
    )


def _spatial_encoder(p: Preset) -> nn.Sequential:
    return nn.Sequential(
        *_downsample(p),
        nn.Conv2d(2 * p.channels, p.latent_channels, 3, padding=1),  # (N, L, 7, 7), no activation
        nn.Flatten(),  # channel by channel: (N, 49L)
        Scale(p.latent_dims),
    )


def _spatial_decoder(p: Preset) -> nn.Sequential:
    return nn.Sequential(
        Scale(p.latent_dims),
        nn.Unflatten(1, (p.latent_channels, IMAGE_SIZE // 4, IMAGE_SIZE // 4)),
        nn.Conv2d(p.latent_channels, 2 * p.channels, 3, padding=1),
        nn.ReLU(),  # (N, 2C, 7, 7)
        *_upsample(p),
    )


_BLOCKS: dict[str, Callable[[int], nn.Module]] = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}
assert tuple(_BLOCKS) == _BLOCK_KINDS

Builder = Callable[[Preset], nn.Sequential]
_BUILDERS: dict[str, tuple[Builder, Builder]] = {
    "seed": (_seed_encoder, _seed_decoder),
    "dense": (_vector_encoder, _vector_decoder),
    "residual": (_vector_encoder, _vector_decoder),
    "spatial": (_spatial_encoder, _spatial_decoder),
    "spatial-residual": (_spatial_encoder, _spatial_decoder),
}


def _builders(preset: Preset) -> tuple[Builder, Builder]:
    try:
        return _BUILDERS[preset.family]
    except KeyError:
        raise ValueError(f"unknown family {preset.family!r}") from None


class Encoder(nn.Module):
    """Image (N, 1, 28, 28) in [0, 1] → latent (N, *preset.latent_shape)."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.net = _builders(preset)[0](preset)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(images)  # nn.Module.__call__ is typed Any
        return out


class Decoder(nn.Module):
    """Latent (N, *preset.latent_shape) → image (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.net = _builders(preset)[1](preset)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(latents)  # nn.Module.__call__ is typed Any
        return out
