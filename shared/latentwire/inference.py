"""Batch-invariant float32 inference: an image's result never depends on its batch.

The services gather concurrent requests into one forward pass (micro-batching), so the same
image or code meets different neighbours and batch sizes from one request to the next. In
float32 on a CPU that alone would change results: the BLAS picks a different kernel for each
number of rows of a matrix product (a different summation order, so different last bits),
and vectorized sigmoid treats the tail of an odd-sized tensor differently. Measured on the
shipped decoders, ~1 image in 400 then came out with a pixel off by one depending on its batch.

``InvariantRunner`` makes that impossible by construction: the network only ever sees blocks
of exactly ``BLOCK`` images (the batch is zero-padded to a multiple of it), so every image goes
through the same kernels with the same shapes whatever its batch; each layer treats the images
of a block independently, so an image's neighbours in its block do not matter either (tests/unit/
test_inference.py checks both on the machine that runs the tests). Batch 1 is not special-cased:
the BLAS and oneDNN pick other kernels for one row (measured: the tutorial's 32→32 convolution
and every Linear layer give other last bits at batch 1 than in larger batches).

A final ``Sigmoid`` is never evaluated: with ``pixels=True`` its input is compared with the
exact pre-images of the 8-bit rounding boundaries, logit((p + ½) / 255), giving the pixels
``round(255 · sigmoid(x))`` would give by comparisons only (an elementwise function is no
safer than a matrix product: vectorized and scalar paths round differently).

What this promises: on one machine (one CPU kind and library build), a code decodes to the same
pixels alone or in any batch, and an image encodes to the same latent. Across machines the
float32 networks may differ in the last bits, so a latent can round differently there; the code
for a given latent, and a code's integers, are exact everywhere (docs/bitstream.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BLOCK", "InvariantRunner"]

#: Images per forward pass. A lone image pays for 16 (encoder ~1 ms, decoder ~2 ms on one core);
#: big batches run at ~85% of the networks' best speed (measured: latentwire-bench).
BLOCK = 16


def _pixel_boundaries() -> torch.Tensor:
    """x such that sigmoid(x) = (p + ½)/255 for p = 0 … 254, rounded down to float32."""
    bounds = [math.log((p + 0.5) / (254.5 - p)) for p in range(255)]
    return torch.tensor(bounds, dtype=torch.float64).to(torch.float32)


class InvariantRunner:
    """Evaluate a float32 ``nn.Sequential`` batch-invariantly (see the module docstring).

    >>> runner = InvariantRunner(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()), pixels=True)
    >>> runner(torch.zeros(5, 4)).dtype
    torch.uint8
    """

    def __init__(self, net: nn.Sequential, *, pixels: bool = False) -> None:
        layers = list(net)
        if pixels:
            if not layers or not isinstance(layers[-1], nn.Sigmoid):
                raise ValueError("pixels=True needs a network that ends in a Sigmoid")
            layers = layers[:-1]
        self.layers = layers
        self.pixels = pixels
        self._boundaries = _pixel_boundaries()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, …) float32 → the network's output (float32), or uint8 pixels with ``pixels=True``."""
        rows = x.shape[0]
        padded = -(-rows // BLOCK) * BLOCK
        if padded != rows:
            x = torch.cat([x, x.new_zeros(padded - rows, *x.shape[1:])])
        blocks = [self._forward(x[start : start + BLOCK]) for start in range(0, padded, BLOCK)]
        return torch.cat(blocks)[:rows] if blocks else self._forward(x)

    def _forward(self, block: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            block = layer(block)
        if self.pixels:
            # bucketize(right=True) counts the boundaries ≤ x: exactly the rounded 8-bit value.
            return torch.bucketize(block, self._boundaries, right=True).to(torch.uint8)
        return block
