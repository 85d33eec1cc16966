"""The byte-granular arithmetic coder: round trips over random tables, overhead, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentwire import arithmetic
from latentwire.errors import BadCodeError

TOTAL = arithmetic.TOTAL


@st.composite
def tables_and_symbols(draw: st.DrawFn, max_len: int = 40) -> tuple[list[list[int]], list[int]]:
    """Random CDF tables (1-300 symbols, skewed or flat) and symbols drawn anywhere in them."""
    n = draw(st.integers(0, max_len))
    cdfs, symbols = [], []
    for _ in range(n):
        size = draw(st.integers(1, 300))
        weights = draw(st.lists(st.integers(1, 10**6), min_size=size, max_size=size))
        freq = np.floor(np.array(weights) / sum(weights) * (TOTAL - size)).astype(int) + 1
        freq[int(np.argmax(freq))] += TOTAL - int(freq.sum())
        cdfs.append([0, *np.cumsum(freq).tolist()])
        symbols.append(draw(st.integers(0, size - 1)))
    return cdfs, symbols


@settings(max_examples=150, deadline=None)
@given(case=tables_and_symbols())
def test_round_trip_and_overhead_under_one_byte(case: tuple[list[list[int]], list[int]]) -> None:
    cdfs, symbols = case
    data = arithmetic.encode(symbols, cdfs)
    assert arithmetic.decode(data, cdfs) == symbols
    # the shortest byte string in the final interval: never a whole byte over the information content
    assert len(data) * 8 < arithmetic.information_bits(symbols, cdfs) + 8
    assert not data.endswith(b"\x00")  # a trailing zero byte would make a shorter encoding


def test_edge_cases() -> None:
    certain = [0, TOTAL]  # a one-symbol table: no information, no bytes
    assert arithmetic.encode([0, 0, 0], [certain] * 3) == b""
    assert arithmetic.decode(b"", [certain] * 3) == [0, 0, 0]
    assert arithmetic.encode([], []) == b"" and arithmetic.decode(b"", []) == []
    rare = [0, TOTAL - 1, TOTAL]  # symbol 1 is the least likely there can be: 16 bits
    assert arithmetic.encode([1], [rare]) == b"\xff\xff"
    assert arithmetic.decode(arithmetic.encode([1] * 7, [rare] * 7), [rare] * 7) == [1] * 7
    assert arithmetic.encode([0], [[0, 1, TOTAL]]) == b""  # an interval starting at 0 needs no bytes


def test_golden_bytes() -> None:
    half = [0, TOTAL // 2, TOTAL]  # a fair bit per symbol
    assert arithmetic.encode([1, 0, 1, 1, 0, 0, 0, 1], [half] * 8) == b"\xb1"
    assert arithmetic.encode([1], [half]) == b"\x80"


@settings(max_examples=100, deadline=None)
@given(case=tables_and_symbols(max_len=12), data=st.data())
def test_tampered_payloads_are_refused_or_canonical(
    case: tuple[list[list[int]], list[int]], data: st.DataObject
) -> None:
    cdfs, symbols = case
    code = arithmetic.encode(symbols, cdfs)
    tampered = data.draw(st.binary(max_size=len(code) + 2).filter(lambda b: b != code))
    try:
        decoded = arithmetic.decode(tampered, cdfs)
    except BadCodeError:
        return
    # anything accepted must be the one canonical encoding of what it decodes to
    assert arithmetic.encode(decoded, cdfs) == tampered and decoded != symbols


def test_trailing_bytes_are_refused() -> None:
    cdfs = [[0, 100, 30000, TOTAL]] * 6
    code = arithmetic.encode([0, 1, 2, 2, 1, 0], cdfs)
    with pytest.raises(BadCodeError, match="not a valid encoding"):
        arithmetic.decode(code + b"\x00", cdfs)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="outside its table"):
        arithmetic.encode([3], [[0, 1, TOTAL]])
    with pytest.raises(ValueError, match="2 tables"):
        arithmetic.encode([0], [[0, TOTAL], [0, TOTAL]])
    for bad in ([0, 5], [1, TOTAL], [0, 10, 10, TOTAL], [0]):
        with pytest.raises(ValueError):
            arithmetic.check_cdf(bad)
