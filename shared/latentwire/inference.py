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

One layer is rewritten on the way, for speed: a stride-2 ``ConvTranspose2d`` to a single
channel (the last layer of the image decoders) becomes the equivalent 3×3 ``Conv2d`` to four
channels followed by ``PixelShuffle(2)`` (each output phase is a small convolution of the input;
Shi et al. 2016). Same function, other float rounding (~1e-6); oneDNN computes it ~2.7× faster
than its one-channel deconvolution, which took 40% of the decoder's time.

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

#: Images per forward pass. A lone image pays for 16 (encoder ~1.1 ms, decoder ~1.5 ms on one
#: core); on one thread, blocks of 16 run at ~80% (encoder) and ~85% (decoder) of the speed of
#: their best batch size (64); torch's second thread helps them less than it helps big batches.
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
        self.layers = [_faster(layer) for layer in layers]
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


def _faster(layer: nn.Module) -> nn.Module:
    """``layer``, or an equivalent that runs faster here (see the module docstring)."""
    if not isinstance(layer, nn.ConvTranspose2d) or isinstance(layer.padding, str):
        return layer
    pad, kernel = layer.padding, layer.kernel_size
    if (
        layer.out_channels == 1
        and layer.stride == (2, 2)
        and layer.output_padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and pad[0] == pad[1] <= 2
        and kernel[0] == kernel[1] == 2 * pad[0] + 1
    ):
        return _subpixel(layer, kernel=kernel[0], padding=pad[0])
    return layer


def _subpixel(layer: nn.ConvTranspose2d, *, kernel: int, padding: int) -> nn.Sequential:
    """A stride-2 transposed convolution as a 3×3 convolution to 4× the channels + PixelShuffle(2).

    Output pixel (2m + a, 2n + b) sums input pixels (m + t − 1, n + s − 1) for t, s ∈ {0, 1, 2}
    with the transposed kernel's tap (a + p + 2 − 2t, b + p + 2 − 2s), where that tap exists.
    """
    k, p = kernel, padding
    weight = layer.weight.detach()  # (in, out, k, k)
    out = layer.out_channels
    conv = nn.Conv2d(layer.in_channels, 4 * out, 3, padding=1, bias=layer.bias is not None)
    taps = torch.zeros(4 * out, layer.in_channels, 3, 3, dtype=weight.dtype)
    for a in (0, 1):
        for b in (0, 1):
            for t in range(3):
                for s in range(3):
                    u, v = a + p + 2 - 2 * t, b + p + 2 - 2 * s
                    if 0 <= u < k and 0 <= v < k:
                        taps[2 * a + b :: 4, :, t, s] = weight[:, :, u, v].t()
    with torch.no_grad():
        conv.weight.copy_(taps)
        if layer.bias is not None:
            conv.bias.copy_(layer.bias.detach().repeat_interleave(4))  # type: ignore[union-attr]
    return nn.Sequential(conv, nn.PixelShuffle(2)).to(weight.dtype).eval()
