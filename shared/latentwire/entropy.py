"""The learned entropy model: a factorized prior over the latent, and its frozen integer tables.

Training (``FactorizedPrior``, after Ballé et al. 2018, as CompressAI's EntropyBottleneck): each
of the K latent dimensions has its own learned, flexible cumulative density c_k, a small
monotone network. With additive uniform noise standing in for rounding, the likelihood of a
noisy value is ``c_k(y + ½) − c_k(y − ½)`` and the rate is its −log2, summed.

After training, ``freeze()`` turns the densities into integer tables (``CdfTables``) — for each
dimension, a support of integers [offset, offset + n) and a CDF over them that sums to
2**16 — the way CompressAI's ``update()`` fixes its CDFs. Both checkpoint halves store those
integers; the receiver never recomputes them from floats, so every machine decodes the same
symbols. Values outside a dimension's support are clamped to its ends (the support covers all
but ~1e-6 of the probability mass, so this almost never happens).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentwire import arithmetic

__all__ = ["CdfTables", "FactorizedPrior"]

_TAIL_MASS = 1e-6
_MAX_SUPPORT = 255  # symbols per dimension; keeps tables small whatever the training did


class CdfTables(NamedTuple):
    """Integer coding tables for K latent dimensions (stored as int32 tensors in checkpoints)."""

    offsets: np.ndarray  # (K,) int32: the smallest symbol value of each dimension
    cdfs: np.ndarray  # (K, M + 1) int32: CDF rows, padded with 2**16 past each dimension's end
    lengths: np.ndarray  # (K,) int32: symbols in each dimension's support

    def rows(self) -> list[list[int]]:
        """The CDFs as Python lists, unpadded, for the arithmetic coder."""
        return [row[: n + 1].tolist() for row, n in zip(self.cdfs, self.lengths, strict=True)]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "offsets": torch.from_numpy(self.offsets.astype(np.int32)),
            "cdfs": torch.from_numpy(self.cdfs.astype(np.int32)),
            "lengths": torch.from_numpy(self.lengths.astype(np.int32)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> CdfTables:
        tables = cls(
            offsets=tensors["offsets"].numpy().astype(np.int64),
            cdfs=tensors["cdfs"].numpy().astype(np.int64),
            lengths=tensors["lengths"].numpy().astype(np.int64),
        )
        tables.validate()
        return tables

    def validate(self) -> None:
        """Raise ValueError unless every row is a valid coding table."""
        k = len(self.offsets)
        if self.cdfs.ndim != 2 or len(self.cdfs) != k or self.lengths.shape != (k,):
            raise ValueError("inconsistent table shapes")
        if (self.lengths < 1).any() or (self.lengths >= self.cdfs.shape[1]).any():
            raise ValueError("table lengths out of range")
        for row in self.rows():
            arithmetic.check_cdf(row)

    def symbols(self, latents: np.ndarray) -> np.ndarray:
        """Rounded latents (N, K) → symbol indices, clamped into each dimension's support."""
        # Arithmetic on untyped-dtype arrays is Any to numpy's stubs: the annotation pins the result.
        symbols: np.ndarray = np.clip(np.rint(latents).astype(np.int64) - self.offsets, 0, self.lengths - 1)
        return symbols

    def values(self, symbols: np.ndarray) -> np.ndarray:
        """Symbol indices (N, K) → integer latent values."""
        values: np.ndarray = symbols + self.offsets
        return values


class FactorizedPrior(nn.Module):
    """A learned density per latent dimension (CompressAI's EntropyBottleneck, for a vector latent)."""

    def __init__(self, dims: int, *, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.dims = dims
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((dims, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(dims, widths[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(dims, widths[i + 1], 1)))

    def _logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of c_k(x) for x of shape (K, 1, M)."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(round(y) bin) for y of shape (N, K): c(y + ½) − c(y − ½), computed stably."""
        x = y.t().unsqueeze(1)  # (K, 1, N)
        lower, upper = self._logits_cdf(x - 0.5), self._logits_cdf(x + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is precise
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.squeeze(1).t().clamp_min(1e-9)  # (N, K)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (latent for the decoder, rate in bits per image).

        The decoder sees rounded values through a straight-through gradient; the rate is
        measured on uniformly-noised values, the differentiable stand-in for rounding.
        """
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bits = -torch.log2(self.likelihood(noisy)).sum(dim=1)  # (N,)
        rounded = y + (torch.round(y) - y).detach()
        return rounded, bits

    @torch.no_grad()
    def freeze(self) -> CdfTables:
        """The integer coding tables of the trained densities."""
        # Support of each dimension: where its CDF leaves the tails, found on a fine grid.
        grid = torch.arange(-200.0, 200.0, 0.25)
        cdf = torch.sigmoid(self._logits_cdf(grid.repeat(self.dims, 1, 1))).squeeze(1)  # (K, G)
        supports = []
        for k in range(self.dims):
            inside = torch.nonzero((cdf[k] > _TAIL_MASS / 2) & (cdf[k] < 1 - _TAIL_MASS / 2))
            lo = math.floor(float(grid[inside.min()])) if len(inside) else 0
            hi = math.ceil(float(grid[inside.max()])) if len(inside) else 0
            lo = max(lo, -(_MAX_SUPPORT // 2))
            supports.append((lo, max(lo, min(hi, lo + _MAX_SUPPORT - 1))))
        first = min(lo for lo, _ in supports)
        last = max(hi for _, hi in supports)
        values = torch.arange(first, last + 1, dtype=torch.float32)
        upper = torch.sigmoid(self._logits_cdf((values + 0.5).repeat(self.dims, 1, 1))).squeeze(1)  # (K, V)
        rows = []
        for k, (lo, hi) in enumerate(supports):
            cdf_k = upper[k, lo - first : hi - first + 1].double().numpy().copy()
            cdf_k[-1] = 1.0  # the ends absorb the tails: clamped values land there
            pmf = np.diff(cdf_k, prepend=0.0).clip(min=0.0)
            rows.append(quantize_pmf(pmf))
        lengths = np.array([len(r) - 1 for r in rows], np.int64)
        cdfs = np.full((self.dims, int(lengths.max()) + 1), arithmetic.TOTAL, dtype=np.int64)
        for k, row in enumerate(rows):
            cdfs[k, : len(row)] = row
        return CdfTables(np.array([lo for lo, _ in supports], np.int64), cdfs, lengths)


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Probabilities → an integer CDF summing to 2**16, every symbol at least 1."""
    n = len(pmf)
    pmf = pmf / pmf.sum()
    freq = np.floor(pmf * (arithmetic.TOTAL - n)).astype(np.int64) + 1
    freq[np.argmax(freq)] += arithmetic.TOTAL - int(freq.sum())
    return np.concatenate([[0], np.cumsum(freq)])
