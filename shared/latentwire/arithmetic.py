"""Byte-granular arithmetic coding with exact integer arithmetic.

Why our own coder: our codes are a few bytes, so termination overhead dominates. Measured here on
16-symbol messages of about 8 bytes of information, constriction's range coder (32-bit words)
spends 1.9 bytes over the information content and its ANS coder 4.9; CompressAI's rANS at least 8.
This coder spends less than one byte: it emits the shortest byte string whose value, read as
the binary fraction 0.b₀b₁…, falls inside the message's final interval.

The interval is kept exactly, as Python integers, with no renormalization: after n symbols it
is ``[low, low + width) / 2**(16·n)``. Messages here are at most a few hundred symbols, so the
integers stay small (a few thousand bits) and coding takes microseconds per symbol. A position
whose table has a single symbol would scale low and width alike by 2**16, which leaves the
interval as it was, so both directions skip such positions (their symbol is always 0) and n
counts only the others.

Termination: k bytes can hit the interval iff some multiple of 2**(16·n − 8k) lies in
``[low, low + width − 1]``, i.e. iff ``low − 1`` and ``low + width − 1`` differ in a bit at or
above that power. The highest differing bit therefore gives the shortest k directly, and the
bytes are the smallest such multiple, ``v = ceil(low / 2**(16·n − 8k))``.

Decoding tracks where the coded fraction x lies inside the current interval as the exact ratio
``r / w`` (0 ≤ r < w; ``w`` is 2**(8·len(data)) times the product of the frequencies so far, times
a fixed power of two, so no fraction is ever needed). The next symbol is the s with
``cdf[s] ≤ ⌊2**16·r / w⌋ < cdf[s+1]``. Rather than divide the big integers, the quotient is
estimated from their leading bits, rounded so that it is never above the true one; the exact
update ``r ← 2**16·r − cdf[s]·w``, ``w ← freq·w`` then shows whether s was right (``r < w``), and
the rare miss is redone with an exact division. Every step keeps x inside the interval (so no
symbol ever has to be clamped into its table), hence x lies in the final interval, and ``data``
is the encoding of what it decoded iff the termination step above, run on that final interval,
gives ``data`` back: nothing is encoded again. Anything else (trailing bytes, a changed byte, a
truncated code usually) is refused: any byte string decodes to *some* symbols, but only one byte
string encodes them. Identical tables give identical results on every machine: there is no
floating point.

Tables: for each position ``i``, ``cdfs[i]`` is a strictly increasing list of integers from 0
to ``2**PRECISION`` (n_i + 1 entries for n_i symbols); symbol s has frequency
``cdfs[i][s+1] - cdfs[i][s] ≥ 1``. ``prepare`` checks them and lays them out once as
``PreparedTables``, which ``encode`` and ``decode`` also accept and code with faster, with the
same results: adjacent positions are coded as one joint symbol while their tables are small
enough, and a lookup table replaces the binary search (see ``PreparedTables``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise
from math import log2

import numpy as np

from latentwire.errors import BadCodeError

__all__ = [
    "PRECISION",
    "PreparedTables",
    "StreamDecoder",
    "check_cdf",
    "decode",
    "encode",
    "encode_many",
    "information_bits",
    "prepare",
]

PRECISION = 16
TOTAL = 1 << PRECISION

Cdf = Sequence[int]

# Decoding estimates ⌊2**16·r / w⌋ (or its lookup bucket) from the top _TOP bits or more of w, and the
# bits of r that go with them, rounding the divisor up: the estimate is never too high, and is too low
# (by one) only where 2**16·r / w is an integer or within about 2**(16 − _TOP) of one. Tests lower it.
_TOP = 52
# Prepared tables: the most joint symbols per run, and the decoder's lookup-table size (2**bits).
_JOINT_LIMIT = 256
_LUT_BITS = 12

# A run of positions coded jointly (see PreparedTables). For encoding: start, end, bits, and (C, F) by
# symbol tuple; for decoding: bits, the lookup table, (C, F, symbols, ⌊log2 F⌋) by joint symbol, and
# the joint cumulative frequencies (C of each joint symbol, then 2**bits).
_EncodeRun = tuple[int, int, int, dict[tuple[int, ...], tuple[int, int]]]
_DecodeRun = tuple[int, Sequence[int], list[tuple[int, int, tuple[int, ...], int]], list[int]]

_BAD_CODE = "the coded payload is not a valid encoding: it was corrupted or truncated"


class PreparedTables:
    """Tables checked and laid out once for the coder by ``prepare``; read-only.

    Runs of adjacent positions are coded as one joint position while the product of their
    table sizes stays within ``_JOINT_LIMIT``: the joint symbol (s₁, …, s_m) has the cumulative
    frequency ``C = (…(c₁·2**16 + f₁·c₂)·2**16 + …)`` and the frequency ``F = f₁·…·f_m`` out of
    2**(16·m), so one step ``low ← low·2**(16·m) + width·C``, ``width ← width·F`` is exactly the m
    single steps, in one pass of the interpreter loop instead of m (the loop's overhead, not the
    integer arithmetic, is most of the time). One-symbol positions ride along in a run (always
    0). The decoder finds the joint symbol through a 2**_LUT_BITS-entry table indexed by the top
    bits of the quotient, which gives the joint symbol at the bottom of that bucket (never past
    the true one); a bucket holding a boundary may need the exact division instead.
    """

    __slots__ = ("_bits", "_decode_runs", "_encode_runs", "cdfs")

    def __init__(self, cdfs: Sequence[Cdf]) -> None:
        self.cdfs: tuple[tuple[int, ...], ...] = tuple(tuple(cdf) for cdf in cdfs)
        for cdf in self.cdfs:
            check_cdf(cdf)
        self._bits = PRECISION * sum(len(cdf) > 2 for cdf in self.cdfs)
        encode_runs: list[_EncodeRun] = []
        decode_runs: list[_DecodeRun] = []
        for start, end in _runs([len(cdf) - 1 for cdf in self.cdfs]):
            bits, joint = _joint(self.cdfs[start:end])
            encode_runs.append((start, end, bits, {syms: (c, f) for syms, c, f in joint}))
            if bits:  # a run that codes nothing (all positions one-symbol) has nothing to decode
                cum = [c for _, c, _ in joint] + [1 << bits]
                entries = [(c, f, syms, f.bit_length() - 1) for syms, c, f in joint]
                decode_runs.append((bits, _lookup_table(cum, bits), entries, cum))
        self._encode_runs = tuple(encode_runs)
        self._decode_runs = tuple(decode_runs)

    def __len__(self) -> int:
        return len(self.cdfs)


def prepare(cdfs: Sequence[Cdf] | PreparedTables) -> PreparedTables:
    """Check ``cdfs`` (``check_cdf``) and lay them out for fast coding, to build once and reuse."""
    return cdfs if isinstance(cdfs, PreparedTables) else PreparedTables(cdfs)


def _runs(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split positions 0 … len(sizes) into runs [start, end) whose product of sizes ≤ _JOINT_LIMIT.

    Greedy, which gives the fewest runs. Each run but the first starts at a position with two
    symbols or more; with none at all, there is a single run.
    """
    runs: list[tuple[int, int]] = []
    start, product = 0, 1
    for i, size in enumerate(sizes):
        if size > 1 and product > 1 and product * size > _JOINT_LIMIT:
            runs.append((start, i))
            start, product = i, 1
        product *= size
    if sizes:
        runs.append((start, len(sizes)))
    return runs


def _joint(cdfs: Sequence[tuple[int, ...]]) -> tuple[int, list[tuple[tuple[int, ...], int, int]]]:
    """The joint table of a run: its bits and (symbols, C, F) for every symbol tuple, in coding order."""
    bits = 0
    joint: list[tuple[tuple[int, ...], int, int]] = [((), 0, 1)]
    for cdf in cdfs:
        if len(cdf) == 2:  # one symbol: the interval stays as it is
            joint = [((*syms, 0), c, f) for syms, c, f in joint]
            continue
        bits += PRECISION
        pairs = [(s, a, b - a) for s, (a, b) in enumerate(pairwise(cdf))]
        joint = [((*syms, s), (c << PRECISION) + f * a, f * g) for syms, c, f in joint for s, a, g in pairs]
    return bits, joint


def _lookup_table(cum: list[int], bits: int) -> Sequence[int]:
    """Entry j: the joint symbol whose range holds the quotient j·2**(bits − _LUT_BITS).

    That is the symbol for the bottom of bucket j, so a lookup never overshoots (see decode).
    """
    step = 1 << (bits - _LUT_BITS)
    table = [0] * (1 << _LUT_BITS)
    for j, (a, b) in enumerate(pairwise(cum)):
        first, end = -(-a // step), -(-b // step)  # the buckets whose bottom lies in [a, b)
        table[first:end] = [j] * (end - first)
    return bytes(table) if len(cum) <= 257 else tuple(table)


def check_cdf(cdf: Cdf) -> None:
    """Raise ValueError unless ``cdf`` is a valid table (0 … 2**PRECISION, strictly increasing)."""
    if len(cdf) < 2 or cdf[0] != 0 or cdf[-1] != TOTAL:
        raise ValueError(f"a CDF runs from 0 to {TOTAL} with at least one symbol")
    if any(b <= a for a, b in pairwise(cdf)):
        raise ValueError("every symbol needs a frequency of at least 1 (the CDF must increase strictly)")


def _check_symbols(symbols: Sequence[int], cdfs: Sequence[Cdf]) -> None:
    """Raise the ValueError for the first symbol outside its table, if there is one."""
    for i, (s, cdf) in enumerate(zip(symbols, cdfs, strict=True)):
        if not 0 <= s < len(cdf) - 1:
            raise ValueError(f"symbol {s} at position {i} is outside its table (0 … {len(cdf) - 2})")


def _terminate(low: int, width: int, bits: int) -> bytes:
    """The shortest bytes whose value, as a fraction, lies in ``[low, low + width) / 2**bits``.

    ``bits`` is a multiple of 8 and the interval lies in [0, 1).
    """
    if low == 0:
        return b""
    # A multiple of 2**shift lies in [low, high] iff (low − 1) >> shift != high >> shift, i.e. iff
    # shift is below the highest bit in which low − 1 and high differ.
    differ = ((low - 1) ^ (low + width - 1)).bit_length()
    k = (bits - differ + 8) >> 3  # ceil((bits − differ + 1) / 8), at most bits / 8
    shift = bits - 8 * k
    return (-(-low >> shift)).to_bytes(k, "big")  # ceil(low / 2**shift)


def encode(symbols: Sequence[int], cdfs: Sequence[Cdf] | PreparedTables) -> bytes:
    """Encode ``symbols[i]`` with table ``cdfs[i]``; the shortest bytes that decode back to them."""
    if len(symbols) != len(cdfs):
        raise ValueError(f"{len(symbols)} symbols but {len(cdfs)} tables")
    if isinstance(cdfs, PreparedTables):
        return _encode_prepared(symbols, cdfs)
    low, width, skipped = 0, 1, 0
    try:
        if len(symbols) and min(symbols) < 0:  # a negative index would wrap around below
            raise IndexError
        for s, cdf in zip(symbols, cdfs, strict=True):
            c = cdf[s]
            f = cdf[s + 1] - c
            if f != 65536:  # TOTAL (literals in the hot loops: PRECISION = 16)
                low = (low << 16) + width * c
                width *= f
            else:  # a one-symbol table leaves the interval as it is
                skipped += 1
    except IndexError:
        _check_symbols(symbols, cdfs)
        raise
    return _terminate(low, width, PRECISION * (len(cdfs) - skipped))


def _encode_prepared(symbols: Sequence[int], tables: PreparedTables) -> bytes:
    key = tuple(symbols)
    low, width = 0, 1
    try:
        for start, end, bits, table in tables._encode_runs:
            c, f = table[key[start:end]]  # KeyError: a symbol outside its table
            low = (low << bits) + width * c
            width *= f
    except KeyError:
        _check_symbols(symbols, tables.cdfs)
        raise
    return _terminate(low, width, tables._bits)


def encode_many(cum: np.ndarray, freq: np.ndarray) -> list[bytes]:
    """``encode`` of many messages of equal length at once, from their symbols' table entries.

    ``cum[n, i]`` and ``freq[n, i]`` are ``cdf[s]`` and ``cdf[s + 1] − cdf[s]`` of message n's
    symbol s at position i, looked up by the caller in its (checked) tables: the same bytes as
    ``encode`` gives row by row. A sequence's interval composes from its halves' as
    ``(low₁·2**bits₂ + width₁·low₂, width₁·width₂, bits₁ + bits₂)``, so adjacent positions
    combine pairwise, then pairs of pairs, each level one whole-array step (the first in int64,
    the rest on Python integers in object arrays): log₂ K numpy passes instead of K trips round
    the interpreter's loop per message.
    """
    cum, freq = np.asarray(cum, np.int64), np.asarray(freq, np.int64)
    if cum.ndim != 2 or cum.shape != freq.shape:
        raise ValueError(f"cum and freq must be (messages, positions) arrays, not {cum.shape}, {freq.shape}")
    coded = freq != TOTAL  # a one-symbol table leaves the interval as it is: it codes nothing
    low, width = np.where(coded, cum, 0), np.where(coded, freq, 1)
    bits = np.where(coded, PRECISION, 0)
    # (0, 1, 0) is the empty sequence: it pads a level with an odd count. The int64 step is exact:
    # low < 2**16·2**16 + 2**16·2**16 = 2**33, width ≤ 2**32.
    low, width, bits = _combine(*_even(low, width, bits))
    low, width, bits = low.astype(object), width.astype(object), bits.astype(object)
    while low.shape[1] > 1:
        low, width, bits = _combine(*_even(low, width, bits))
    if not low.shape[1]:  # no positions: every message is empty
        return [b""] * len(low)
    ends = zip(low[:, 0].tolist(), width[:, 0].tolist(), bits[:, 0].tolist(), strict=True)
    return [_terminate(*end) for end in ends]


def _even(low: np.ndarray, width: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if low.shape[1] % 2 == 0:
        return low, width, bits
    pad = np.zeros((len(low), 1), low.dtype)
    return (
        np.concatenate([low, pad], axis=1),
        np.concatenate([width, pad + 1], axis=1),
        np.concatenate([bits, pad], axis=1),
    )


def _combine(
    low: np.ndarray, width: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pair of adjacent sequences (even column, then odd) as one."""
    return (
        (low[:, 0::2] << bits[:, 1::2]) + width[:, 0::2] * low[:, 1::2],
        width[:, 0::2] * width[:, 1::2],
        bits[:, 0::2] + bits[:, 1::2],
    )


def decode(data: bytes, cdfs: Sequence[Cdf] | PreparedTables) -> list[int]:
    """Decode one symbol per table; refuse ``data`` unless it is exactly ``encode``'s output."""
    if isinstance(cdfs, PreparedTables):
        return _decode_prepared(data, cdfs)
    decoder = StreamDecoder(data, positions=len(cdfs))
    symbols = decoder.decode(cdfs)
    decoder.finish()
    return symbols


class StreamDecoder:
    """``decode`` a few positions at a time, for tables that depend on the symbols before them.

    A conditional entropy model knows the tables of the next positions only once the symbols
    before them are decoded. The state between calls is the exact ``r / w`` of ``decode``, so
    decoding in any number of calls gives what one ``decode`` call with all the tables gives,
    refusals included: ``finish`` refuses ``data`` unless it is exactly ``encode``'s output for
    all the symbols and tables, and ``data`` longer than any encoding of ``positions``
    positions is refused at once.

    >>> cdfs = [[0, 1 << 15, TOTAL]] * 3
    >>> decoder = StreamDecoder(encode([1, 0, 1], cdfs), positions=3)
    >>> decoder.decode(cdfs[:2]) + decoder.decode(cdfs[2:])
    [1, 0, 1]
    >>> decoder.finish()
    """

    __slots__ = ("_coded", "_data", "_guard", "_left", "_r", "_value", "_w")

    def __init__(self, data: bytes, *, positions: int) -> None:
        scale = 8 * len(data)  # data is the fraction value / 2**scale
        if scale > PRECISION * positions:  # longer than any encoding (a symbol adds 2 bytes at most)
            raise BadCodeError(_BAD_CODE)
        self._data = data
        self._value = int.from_bytes(data, "big")
        self._guard = _guard(scale)
        self._r, self._w = self._value << self._guard, 1 << (scale + self._guard)
        self._left = positions  # positions still to decode
        self._coded = 0  # positions decoded so far with more than one symbol

    def decode(self, cdfs: Sequence[Cdf]) -> list[int]:
        """The symbols of the next ``len(cdfs)`` positions, coded with these tables."""
        if len(cdfs) > self._left:
            raise ValueError(f"{len(cdfs)} tables, but only {self._left} positions are left")
        self._left -= len(cdfs)
        r, w = self._r, self._w
        coded = 0
        symbols: list[int] = []
        append = symbols.append
        for cdf in cdfs:
            if len(cdf) == 2:  # one symbol: nothing coded
                append(0)
                continue
            coded += 1
            e = w.bit_length() - _TOP
            s = bisect_right(cdf, (r >> (e - 16)) // ((w >> e) + 1)) - 1  # ⌊2**16·r / w⌋, or 1 less
            c = cdf[s]
            rn = (r << 16) - c * w
            wn = w * (cdf[s + 1] - c)
            if rn >= wn:  # the estimate fell just short of a boundary: divide exactly
                s = bisect_right(cdf, (r << 16) // w) - 1
                c = cdf[s]
                rn = (r << 16) - c * w
                wn = w * (cdf[s + 1] - c)
            r = rn
            w = wn
            append(s)
        self._r, self._w = r, w
        self._coded += coded
        return symbols

    def finish(self) -> None:
        """Refuse the data (BadCodeError) unless it is exactly the encoding of what was decoded."""
        if self._left:
            raise ValueError(f"{self._left} positions are not decoded yet")
        _check_final(self._data, self._value, self._guard, self._r, self._w, PRECISION * self._coded)


def _decode_prepared(data: bytes, tables: PreparedTables) -> list[int]:
    scale = 8 * len(data)
    if scale > tables._bits:  # longer than any encoding
        raise BadCodeError(_BAD_CODE)
    if not tables._decode_runs:  # nothing is coded: only b"" (checked just above) is an encoding
        return [0] * len(tables.cdfs)
    value = int.from_bytes(data, "big")
    guard = _guard(scale)
    r, w = value << guard, 1 << (scale + guard)
    # The estimates use w's bits from e up: _TOP of them or more, as w grows by F ≥ 2**log_f per run.
    e = w.bit_length() - _TOP
    symbols: list[int] = []
    for bits, lut, entries, cum in tables._decode_runs:
        # The lookup bucket of the estimated ⌊2**bits·r / w⌋, then the joint symbol at the bucket's
        # bottom: never past the true one.
        c, f, syms, log_f = entries[lut[(r >> (e - _LUT_BITS)) // ((w >> e) + 1)]]
        rn = (r << bits) - c * w
        wn = w * f
        if rn >= wn:  # it fell short (a boundary inside the bucket): divide exactly
            c, f, syms, log_f = entries[bisect_right(cum, (r << bits) // w) - 1]
            rn = (r << bits) - c * w
            wn = w * f
        r = rn
        w = wn
        e += log_f
        symbols += syms
    _check_final(data, value, guard, r, w, tables._bits)
    return symbols


def _guard(scale: int) -> int:
    """A power of two for both r and w (their ratio stays) so that w ≥ 2**(_TOP + 15).

    The quotient estimates then shift the top of ``w`` down from bit ``e ≥ 16``.
    """
    return max(0, _TOP + 15 - scale)


def _check_final(data: bytes, value: int, guard: int, r: int, w: int, bits: int) -> None:
    """Refuse ``data`` unless it is the termination of the final interval (see the module docstring)."""
    scale = 8 * len(data)
    if scale > bits:
        raise BadCodeError(_BAD_CODE)
    # Exactly: r = value·2**(guard + bits) − low·2**(scale + guard), w = width·2**(scale + guard).
    low = (value << (bits - scale)) - (r >> (scale + guard))
    if _terminate(low, w >> (scale + guard), bits) != data:
        raise BadCodeError(_BAD_CODE)


def information_bits(symbols: Sequence[int], cdfs: Sequence[Cdf]) -> float:
    """The message's information content under the tables: Σ −log2(frequency / 2**PRECISION)."""
    return sum(PRECISION - log2(cdf[s + 1] - cdf[s]) for s, cdf in zip(symbols, cdfs, strict=True))
