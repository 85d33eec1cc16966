"""FROZEN REFERENCE: a verbatim copy of ``latentwire.arithmetic`` before it was optimized.

Do not edit or "fix" this module: the property tests in ``test_arithmetic.py`` use it as the
oracle that the fast coder must match byte for byte (encode) and accept/refuse for accept/refuse
(decode). The original module docstring follows.

Byte-granular arithmetic coding with exact integer arithmetic.

Why our own coder: our codes are a few bytes, so termination overhead dominates. Measured here on
16-symbol messages of about 8 bytes of information, constriction's range coder (32-bit words)
spends 1.9 bytes over the information content and its ANS coder 4.9; CompressAI's rANS at least 8.
This coder spends less than one byte: it emits the shortest byte string whose value, read as
the binary fraction 0.b₀b₁…, falls inside the message's final interval.

The interval is kept exactly, as Python integers, with no renormalization: after n symbols it
is ``[low, low + width) / 2**(16·n)``. Messages here are at most a few hundred symbols, so the
integers stay small (a few thousand bits) and coding takes microseconds per symbol.

Tables: for each position ``i``, ``cdfs[i]`` is a strictly increasing list of integers from 0
to ``2**PRECISION`` (n_i + 1 entries for n_i symbols); symbol s has frequency
``cdfs[i][s+1] - cdfs[i][s] ≥ 1``.

Any byte string decodes to *some* symbols, so ``decode`` re-encodes what it decoded and refuses
input that is not exactly that encoding (trailing bytes, a changed byte, a truncated code
usually). Identical tables give identical results on every machine: there is no floating point.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise
from math import log2

from latentwire.errors import BadCodeError

__all__ = ["PRECISION", "check_cdf", "decode", "encode", "information_bits"]

PRECISION = 16
TOTAL = 1 << PRECISION

Cdf = Sequence[int]


def check_cdf(cdf: Cdf) -> None:
    """Raise ValueError unless ``cdf`` is a valid table (0 … 2**PRECISION, strictly increasing)."""
    if len(cdf) < 2 or cdf[0] != 0 or cdf[-1] != TOTAL:
        raise ValueError(f"a CDF runs from 0 to {TOTAL} with at least one symbol")
    if any(b <= a for a, b in pairwise(cdf)):
        raise ValueError("every symbol needs a frequency of at least 1 (the CDF must increase strictly)")


def encode(symbols: Sequence[int], cdfs: Sequence[Cdf]) -> bytes:
    """Encode ``symbols[i]`` with table ``cdfs[i]``; the shortest bytes that decode back to them."""
    if len(symbols) != len(cdfs):
        raise ValueError(f"{len(symbols)} symbols but {len(cdfs)} tables")
    low, width = 0, 1
    for i, (s, cdf) in enumerate(zip(symbols, cdfs, strict=True)):
        if not 0 <= s < len(cdf) - 1:
            raise ValueError(f"symbol {s} at position {i} is outside its table (0 … {len(cdf) - 2})")
        low = (low << PRECISION) + width * cdf[s]
        width *= cdf[s + 1] - cdf[s]
    bits = PRECISION * len(symbols)
    # Shortest k with an integer v: low ≤ v·2**bits / 256**k < low + width.
    k = 0
    while True:
        shift = bits - 8 * k
        if shift >= 0:
            v = -(-low >> shift)  # ceil(low / 2**shift)
            if v << shift < low + width:
                return v.to_bytes(k, "big")
        else:
            v = low << -shift
            return v.to_bytes(k, "big")
        k += 1


def decode(data: bytes, cdfs: Sequence[Cdf]) -> list[int]:
    """Decode one symbol per table; refuse ``data`` unless it is exactly ``encode``'s output."""
    value = int.from_bytes(data, "big")
    scale = 8 * len(data)  # data is the fraction value / 2**scale
    low, width = 0, 1
    symbols: list[int] = []
    for n, cdf in enumerate(cdfs, start=1):
        # The symbol whose sub-interval holds the value:
        # cdf[s] ≤ (value·2**(16n) / 2**scale − low·2**16) / width.
        shift = PRECISION * n - scale
        scaled = value << shift if shift >= 0 else value >> -shift
        # Flooring a negative shift is exact: the bound it is compared with is an integer.
        target = (scaled - (low << PRECISION)) // width
        s = min(max(bisect_right(cdf, target) - 1, 0), len(cdf) - 2)
        symbols.append(s)
        low = (low << PRECISION) + width * cdf[s]
        width *= cdf[s + 1] - cdf[s]
    if encode(symbols, cdfs) != data:
        raise BadCodeError("the coded payload is not a valid encoding: it was corrupted or truncated")
    return symbols


def information_bits(symbols: Sequence[int], cdfs: Sequence[Cdf]) -> float:
    """The message's information content under the tables: Σ −log2(frequency / 2**PRECISION)."""
    return sum(PRECISION - log2(cdf[s + 1] - cdf[s]) for s, cdf in zip(symbols, cdfs, strict=True))
