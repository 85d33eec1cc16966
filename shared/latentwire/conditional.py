"""A conditional entropy model: each latent value's distribution predicted from the values before it.

The factorized prior (``entropy``) codes the K latent values independently. This one splits the
latent into G contiguous groups and predicts, for every value of group g, the mean μ and scale b
of a Laplace distribution from the *rounded* values of groups 0 … g−1, with one MADE-style
masked MLP (Germain et al. 2015; PixelCNN-style priors do the same over pixels)::

    rounded latent ŷ (N, K) ──► masked Linear (K → H) ──► ReLU, ≤ 2**16 ──► masked Linear (H → 2K)
                                                                             │
                                  means μ (N, K) ◄───────────────────────────┤
                                  log-scales ln b (N, K) ◄───────────────────┘

Hidden unit h has a degree d_h in 1 … G−1 and sees only the input groups j < d_h; outputs of
group g see only the hidden units with d_h ≤ g. So group g's predictions depend on groups < g
alone, and group 0's are learned constants (biases). Decoding runs group by group: G passes.

Why Laplace, not Gaussian: its heavier tails cost fewer bits on the rare large residual, its
CDF is one exponential (cheap, exact tables), and the factorized probes of issue #10 used it.

Training (``ConditionalPrior``): the rate of the noisy latent y + U(−½, ½) under the Laplace with
the predicted mean and scale (clamped to [SCALE_MIN, SCALE_MAX]). The MLP reads the rounded
latent (straight-through: rounded forward, identity gradient). The mean is not rounded in
training: a straight-through rounded mean sticks at a rounding boundary (half ±½ off, at ~4 bits
a value where 0.1 would do, measured), so the integer model keeps ``mean_bits`` fractional bits.

Coding (``ConditionalTables``, from ``freeze()``, as CompressAI's ``update()``): integers only.
The weights and biases are fixed point with ``frac_bits`` fractional bits; the forward pass is
numpy int64 (``IntegerConditional``), the mean is rounded to a multiple of 2**−mean_bits, split
into an integer μ̂ and a fraction δ, and the log-scale picks one of S log-spaced scales through
integer thresholds; each (scale, δ) pair has an integer CDF over the residuals ŷ − μ̂ = −R … R
(values outside are clamped to ±R, the tails folded into the ends).
Both checkpoint halves store these integers, so sender and receiver compute the same μ̂ and
scale index for every position, bit for bit, on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentwire import arithmetic
from latentwire.entropy import quantize_pmf

__all__ = [
    "ConditionalParams",
    "ConditionalPrior",
    "ConditionalTables",
    "IntegerConditional",
    "clamp",
    "group_bounds",
    "masks",
]

SCALE_MIN = 0.05  # below it a value is certain to within 1e-4: finer scales buy nothing
SCALE_MAX = 32.0  # latents of the dense presets spread a few units; 32 leaves ~2% past R = 127 only there
ACTIVATION_MAX = 1 << 16  # hidden activations are capped here, in both models: it bounds the integers
WEIGHT_MAX = 1 << 7  # |weight| and |bias| caps of the frozen model (trained ones are far below)
MAX_WIDTH = 1024  # K and H at most: with the caps above, every int64 sum stays below 2**62


@dataclass(frozen=True)
class ConditionalParams:
    """The integer model's shape and fixed-point format: the checkpoint's ``codec`` entry."""

    groups: int  # G: contiguous groups, decoded one after another (K: fully sequential)
    hidden: int  # H: hidden units of the masked MLP
    frac_bits: int = 12  # fractional bits of the fixed-point weights and activations
    support: int = 127  # R: residuals ŷ − μ̂ are coded in −R … R (2R + 1 symbols)
    scales: int = 64  # S: log-spaced Laplace scales, one CDF each
    value_max: int = 255  # V: latent values and means are clamped to −V … V
    mean_bits: int = 3  # fractional bits of the mean: 2**mean_bits CDFs per scale (3: −0.6 bit vs 2)
    precision: int = arithmetic.PRECISION  # bits of the CDFs' total

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if type(getattr(self, name)) is not int:  # JSON true/1.0 must not pass for 1
                raise TypeError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.precision != arithmetic.PRECISION:  # the coder's arithmetic is fixed at 16
            raise ValueError(f"precision {self.precision!r}: this build codes at {arithmetic.PRECISION}")
        if not 1 <= self.groups <= MAX_WIDTH or not 1 <= self.hidden <= MAX_WIDTH:
            raise ValueError(f"groups and hidden must be in 1 … {MAX_WIDTH}")
        if not 1 <= self.frac_bits <= 14:  # 14: the int64 bound of the second layer (IntegerConditional)
            raise ValueError(f"frac_bits must be in 1 … 14, got {self.frac_bits}")
        if not 2 <= self.scales <= 1024:
            raise ValueError(f"scales must be in 2 … 1024, got {self.scales}")
        if min(self.support, self.value_max) < 1 or self.support + self.value_max > 1023:
            raise ValueError("support and value_max must be positive, with support + value_max ≤ 1023")
        if not 0 <= self.mean_bits <= 4:
            raise ValueError(f"mean_bits must be in 0 … 4, got {self.mean_bits}")
        if 2 * self.support + 1 > arithmetic.TOTAL:
            raise ValueError("more residuals than the CDF total can give a frequency")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "conditional", **{name: getattr(self, name) for name in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, codec: Mapping[str, Any]) -> Self:
        names = set(cls.__dataclass_fields__)
        unknown = set(codec) - {"kind"} - names
        if unknown:  # a newer variant must not decode as this one
            raise ValueError(f"unknown conditional parameters {sorted(unknown)}")
        missing = names - set(codec)
        if missing:  # every field is written: a default must never stand in for a stored value
            raise ValueError(f"missing conditional parameters {sorted(missing)}")
        return cls(**{name: codec[name] for name in names})


def group_bounds(dims: int, groups: int) -> np.ndarray:
    """(G + 1,) the first position of each group, then K: contiguous, sizes differing by one at most."""
    if not 1 <= groups <= dims:
        raise ValueError(f"{groups} groups for {dims} latent values: need 1 … {dims}")
    return np.array([g * dims // groups for g in range(groups + 1)], np.int64)


def masks(dims: int, groups: int, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """MADE masks by group degree: (H, K) input → hidden, (2K, H) hidden → outputs (means, log-scales).

    Input k has its group's degree g(k); hidden unit h the degree d_h = 1 + h mod (G − 1) and
    sees inputs with g(k) < d_h; outputs of group g see hidden units with d_h ≤ g.
    """
    bounds = group_bounds(dims, groups)
    group_of = np.searchsorted(bounds, np.arange(dims), side="right") - 1  # (K,)
    degree = 1 + np.arange(hidden) % max(groups - 1, 1)  # (H,)
    first = degree[:, None] > group_of[None, :]  # (H, K)
    second = degree[None, :] <= group_of[:, None]  # (K, H)
    return first.astype(np.int64), np.concatenate([second, second]).astype(np.int64)


def scale_table(scales: int) -> np.ndarray:
    """(S,) the Laplace scales of the frozen model, log-spaced over [SCALE_MIN, SCALE_MAX]."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), scales))


class ConditionalTables(NamedTuple):
    """The frozen integer model (stored as int32 tensors in both checkpoint halves).

    Fixed point: a weight w is stored as round(w·2**F), F = ``frac_bits``; inputs are integers.
    """

    w1: np.ndarray  # (H, K) masked input → hidden weights, F fractional bits
    b1: np.ndarray  # (H,) hidden biases, F fractional bits
    w2: np.ndarray  # (2K, H) masked hidden → output weights: K mean rows, then K log-scale rows
    b2: np.ndarray  # (2K,) output biases, F fractional bits
    thresholds: np.ndarray  # (S − 1,) ln b between adjacent scales, F fractional bits, increasing
    cdfs: np.ndarray  # (S·2**mean_bits, 2R + 2) a CDF over the residuals −R … R by scale, then δ

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name).astype(np.int32)) for name in self._fields}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> ConditionalTables:
        arrays = {}
        for name in cls._fields:
            tensor = tensors[name]
            if tensor.dtype != torch.int32:
                raise ValueError(f"table {name} must be int32, got {tensor.dtype}")
            arrays[name] = tensor.numpy().astype(np.int64)
        return cls(**arrays)

    def validate(self, params: ConditionalParams, dims: int) -> None:
        """Raise ValueError unless these tables are a model of ``params`` for a K = ``dims`` latent.

        Besides shapes and CDFs: the weights respect the masks (the decoder could not reproduce
        the encoder's predictions otherwise) and the caps that keep every integer in int64.
        """
        if not 1 <= dims <= MAX_WIDTH:
            raise ValueError(f"a conditional model codes 1 … {MAX_WIDTH} latent values, not {dims}")
        k, h, f = dims, params.hidden, params.frac_bits
        shapes = {
            "w1": (h, k),
            "b1": (h,),
            "w2": (2 * k, h),
            "b2": (2 * k,),
            "thresholds": (params.scales - 1,),
            "cdfs": (params.scales << params.mean_bits, 2 * params.support + 2),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"table {name} is {getattr(self, name).shape}, expected {shape}")
        first, second = masks(k, params.groups, h)  # group_bounds: ValueError unless groups ≤ K
        if (self.w1 * (1 - first)).any() or (self.w2 * (1 - second)).any():
            raise ValueError("the weights do not respect the autoregressive masks")
        cap = WEIGHT_MAX << f
        if any(np.abs(getattr(self, name)).max() > cap for name in ("w1", "b1", "w2", "b2")):
            raise ValueError(f"a weight or bias is beyond ±{WEIGHT_MAX}")
        if (np.diff(self.thresholds) < 0).any():
            raise ValueError("the scale thresholds must increase")
        for row in self.cdfs.tolist():
            arithmetic.check_cdf(row)


_LIMB_BITS = 16  # 2**16 · 2**21 · 2**10 terms < 2**53: each limb's sums are exact in float64
_LIMB_MASK = (1 << _LIMB_BITS) - 1
# Up to this many multiply-adds (rows × inner × columns) numpy's int64 loop beats a float64
# BLAS call (measured on one thread: 2.5 against 4.6 µs at 2,048, 36 against 6 µs at 14,336).
_INT_LOOP_MACS = 4096


def clamp(x: np.ndarray, low: int | np.ndarray, high: int | np.ndarray) -> np.ndarray:
    """``np.clip`` for integer arrays, a quarter of its time on the small arrays of one code."""
    out: np.ndarray = np.minimum(np.maximum(x, low), high)
    return out


class ExactWeights(NamedTuple):
    """An integer weight matrix, and the same values as float64 for the BLAS path."""

    ints: np.ndarray  # int64
    floats: torch.Tensor  # float64, every value an integer

    @classmethod
    def of(cls, ints: np.ndarray) -> ExactWeights:
        ints = np.ascontiguousarray(ints, np.int64)
        return cls(ints, torch.from_numpy(ints.astype(np.float64)))


def _float_matmul(x: np.ndarray, w: ExactWeights) -> np.ndarray:
    """int64 ``x`` @ ``w`` as int64, exact while every partial sum stays below 2**53.

    In torch, not numpy: numpy's BLAS threads would spin against torch's on the same cores.
    """
    product: np.ndarray = (torch.from_numpy(x.astype(np.float64)) @ w.floats).numpy()
    return product.astype(np.int64)


def exact_matmul(x: np.ndarray, w: ExactWeights, *, limbs: bool = True) -> np.ndarray:
    """int64 ``x`` (|x| < 2**32) @ ``w`` (|w| ≤ 2**21, ≤ 1024 rows), exactly, as int64.

    Small products go through numpy's int64 loop. Larger ones go through float64 BLAS, whose sums past
    2**53 would round, so with ``limbs`` ``x`` goes in two 16-bit limbs (x = hi·2**16 + lo, two's
    complement), each limb's product summed exactly, the two joined in int64; without, the
    caller vouches that every sum of ``x @ w`` stays below 2**53.
    """
    rows, (inner, columns) = len(x), w.ints.shape
    if rows * inner * columns <= _INT_LOOP_MACS * (2 if limbs else 1):  # limbs: two BLAS calls
        product: np.ndarray = x @ w.ints
        return product
    if not limbs:
        return _float_matmul(x, w)
    high = _float_matmul(x >> _LIMB_BITS, w)
    joined: np.ndarray = (high << _LIMB_BITS) + _float_matmul(x & _LIMB_MASK, w)
    return joined


class IntegerConditional:
    """The frozen model's forward pass in int64: μ̂ and a CDF row per position of a group.

    For group g, from the values of groups < g (N, start_g), with M = ``mean_bits``::

        a = values @ w1ᵀ + b1                      F fractional bits
        h = clip(a, 0, 2**(16 + F))                ReLU, capped as in training
        o = h @ w2ᵀ + b2·2**F                      2F fractional bits
        m = clip(⌊(o_mean + 2**(2F−M−1)) / 2**(2F−M)⌋, −V·2**M, V·2**M)   the mean in 2**−M steps
        μ̂ = ⌊m / 2**M⌋,  δ = m mod 2**M                                  integer part, fraction
        scale = #{thresholds ≤ ⌊o_logscale / 2**F⌋}                        0 … S − 1
        row = scale·2**M + δ                                               the CDF row

    Bounds (checked by ``ConditionalTables.validate``): |values| ≤ V + R < 2**10, K, H ≤ 2**10,
    |weights| ≤ 2**(7 + F), so |a| < 2**(F + 28) and |o| < 2**(2F + 34) ≤ 2**62 for F ≤ 14.

    The products are summed by float64 BLAS, exactly: every term and every partial sum is an
    integer below 2**53, so no addition rounds, in any order (numpy's int64 matmul has no BLAS
    and was a third of the time of compressing a batch). ``a``'s sums fit as they are (< 2**42);
    ``h`` (up to 31 bits) goes through ``exact_matmul``'s two 16-bit limbs.
    """

    def __init__(self, params: ConditionalParams, tables: ConditionalTables, dims: int) -> None:
        tables.validate(params, dims)
        self.params, self.tables, self.dims = params, tables, dims
        self.bounds = group_bounds(dims, params.groups)
        f = params.frac_bits
        self._act_max = ACTIVATION_MAX << f
        self._shift = 2 * f - params.mean_bits
        self._half = 1 << (self._shift - 1)
        # Per group: the hidden units it reads (d_h ≤ g) and the slices of the weights it needs,
        # transposed for (N, start) @ (start, H_g); zero by the masks elsewhere.
        degree = 1 + np.arange(params.hidden) % max(params.groups - 1, 1)
        self._layers = []
        for g in range(params.groups):
            start, end = int(self.bounds[g]), int(self.bounds[g + 1])
            units = np.flatnonzero(degree <= g)
            rows = np.r_[start:end, dims + start : dims + end]
            self._layers.append(
                (
                    ExactWeights.of(tables.w1[units, :start].T),  # (start, H_g)
                    tables.b1[units],  # (H_g,)
                    ExactWeights.of(tables.w2[np.ix_(rows, units)].T),  # (H_g, 2n)
                    tables.b2[rows] << f,  # (2n,)
                )
            )

    def predict(self, values: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer values (N, ≥ start_g) → means μ̂ and CDF rows (N, n_g) of group ``group``.

        Only the first start_g columns are read: the groups before this one.
        """
        w1, b1, w2, b2 = self._layers[group]
        start = int(self.bounds[group])
        n = int(self.bounds[group + 1]) - start
        x = np.asarray(values, np.int64)[:, :start]  # (N, start)
        hidden = clamp(exact_matmul(x, w1, limbs=False) + b1, 0, self._act_max)  # (N, H_g), F frac. bits
        out = exact_matmul(hidden, w2) + b2  # (N, 2n), 2F fractional bits
        f = self.params.frac_bits
        m, v = self.params.mean_bits, self.params.value_max << self.params.mean_bits
        means = clamp((out[:, :n] + self._half) >> self._shift, -v, v)  # 2**−M steps
        scales = np.searchsorted(self.tables.thresholds, out[:, n:] >> f, side="right")
        return means >> m, (scales.astype(np.int64) << m) + (means & ((1 << m) - 1))


class ConditionalPrior(nn.Module):
    """The training-side model: a masked MLP over the rounded latent, Laplace likelihoods.

    >>> prior = ConditionalPrior(8, groups=4)
    >>> rounded, bits = prior(torch.randn(2, 8))
    >>> bits.shape
    torch.Size([2])
    """

    mask1: torch.Tensor  # (H, K) buffers: the masks of ``masks``
    mask2: torch.Tensor  # (2K, H)

    def __init__(self, dims: int, *, groups: int = 4, hidden: int = 0, frac_bits: int = 12) -> None:
        super().__init__()
        hidden = hidden or max(2 * dims, 16)
        self.params = ConditionalParams(groups=groups, hidden=hidden, frac_bits=frac_bits)
        self.dims = dims
        first, second = masks(dims, groups, hidden)
        self.register_buffer("mask1", torch.from_numpy(first).float(), persistent=False)
        self.register_buffer("mask2", torch.from_numpy(second).float(), persistent=False)
        self.w1 = nn.Parameter(torch.randn(hidden, dims) / math.sqrt(dims))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2 = nn.Parameter(torch.randn(2 * dims, hidden) * 0.01)
        self.b2 = nn.Parameter(torch.zeros(2 * dims))  # means 0, scales 1 to begin with

    def predict(self, rounded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rounded latent (N, K) → means and log-scales (N, K), each from the groups before it."""
        hidden = F.linear(rounded, self.w1 * self.mask1, self.b1).clamp(0.0, ACTIVATION_MAX)  # (N, H)
        out = F.linear(hidden, self.w2 * self.mask2, self.b2)  # (N, 2K)
        return out[:, : self.dims], out[:, self.dims :]

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent for the decoder, rate in bits per image), as ``FactorizedPrior.forward``.

        Training measures the rate on uniformly-noised values; evaluation (``eval()``) on the
        rounded ones, the values the code carries.
        """
        rounded = y + (torch.round(y) - y).detach()  # straight-through
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else rounded
        means, log_scales = self.predict(rounded)
        scales = torch.exp(log_scales.clamp(math.log(SCALE_MIN), math.log(SCALE_MAX)))
        bits = -torch.log2(laplace_bin(noisy - means, scales).clamp_min(1e-9)).sum(dim=1)  # (N,)
        return rounded, bits

    @torch.no_grad()
    def freeze(self) -> ConditionalTables:
        """The integer model: fixed-point weights, scale thresholds and one CDF per scale."""
        p = self.params
        one = float(1 << p.frac_bits)
        cap = WEIGHT_MAX << p.frac_bits

        def fixed(t: torch.Tensor) -> np.ndarray:
            return np.clip(np.rint(t.detach().cpu().double().numpy() * one), -cap, cap).astype(np.int64)

        log_scales = np.log(scale_table(p.scales))
        thresholds = np.rint((log_scales[:-1] + log_scales[1:]) / 2 * one).astype(np.int64)
        residuals = np.arange(-p.support, p.support + 1, dtype=np.float64)
        cdfs = []
        for scale in scale_table(p.scales):
            for step in range(1 << p.mean_bits):
                delta = step / (1 << p.mean_bits)  # the mean's fraction: the Laplace sits at μ̂ + δ
                b = torch.tensor(scale, dtype=torch.float64)
                pmf = laplace_bin(torch.from_numpy(residuals - delta), b).numpy()
                # the tails beyond ±R fold into the ends: clamped residuals land there
                pmf[0] += 0.5 * math.exp(-(p.support + 0.5 + delta) / scale)
                pmf[-1] += 0.5 * math.exp(-(p.support + 0.5 - delta) / scale)
                cdfs.append(quantize_pmf(pmf))
        return ConditionalTables(
            w1=fixed(self.w1 * self.mask1),
            b1=fixed(self.b1),
            w2=fixed(self.w2 * self.mask2),
            b2=fixed(self.b2),
            thresholds=thresholds,
            cdfs=np.stack(cdfs),
        )


def laplace_bin(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(x − ½ < X < x + ½) for X ~ Laplace(0, scale), computed without cancellation."""
    x = x.abs()  # symmetric
    upper, lower = x + 0.5, x - 0.5
    # lower ≥ 0: both ends in the right tail, ½·e^(−lower/b)·(1 − e^(−1/b)); otherwise the bin holds 0
    tail = 0.5 * torch.exp(-lower.clamp_min(0.0) / scale) * -torch.expm1(-1.0 / scale)
    middle = 1.0 - 0.5 * torch.exp(-upper / scale) - 0.5 * torch.exp(lower.clamp_max(0.0) / scale)
    return torch.where(lower >= 0, tail, middle)
