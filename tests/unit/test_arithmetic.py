"""The byte-granular arithmetic coder: round trips over random tables, overhead, refusals, and
agreement with the frozen reference coder (same bytes, same accepted codes), raw tables or prepared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentwire import arithmetic
from latentwire.errors import BadCodeError
from tests.unit import arithmetic_reference as reference

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


# --- The fast coder against the frozen reference (tests/unit/arithmetic_reference.py) ---------------
# The reference is the coder as it was before it was optimized; the fast one must give the same bytes,
# accept exactly the same byte strings and decode them to the same symbols, raw tables or prepared.


@st.composite
def cdf_table(draw: st.DrawFn) -> list[int]:
    """One valid table: often one symbol or a handful, sometimes up to 300 (past a byte's range)."""
    size = draw(st.one_of(st.just(1), st.integers(2, 5), st.integers(1, 300)))
    if size == 1:
        return [0, TOTAL]
    # a weight of 10**9 next to ones squeezes the others to frequency 1: ranges of a single quotient
    weights = draw(st.lists(st.one_of(st.integers(1, 10**6), st.just(10**9)), min_size=size, max_size=size))
    freq = np.floor(np.array(weights) / sum(weights) * (TOTAL - size)).astype(int) + 1
    freq[int(np.argmax(freq))] += TOTAL - int(freq.sum())
    return [0, *np.cumsum(freq).tolist()]


@st.composite
def message(draw: st.DrawFn, max_len: int = 24, min_len: int = 0) -> tuple[list[list[int]], list[int]]:
    """Tables and symbols that follow them, mostly the likely ones (as real codes do)."""
    cdfs = draw(st.lists(cdf_table(), min_size=min_len, max_size=max_len))
    symbols = []
    for cdf in cdfs:
        likely = int(np.argmax(np.diff(cdf)))
        symbols.append(draw(st.one_of(st.just(likely), st.integers(0, len(cdf) - 2))))
    return cdfs, symbols


def outcome(decode: Callable[[bytes, Any], list[int]], data: bytes, cdfs: Any) -> list[int] | str:
    try:
        return decode(data, cdfs)
    except BadCodeError as exc:
        return f"BadCodeError: {exc}"


def assert_decoders_agree(data: bytes, cdfs: list[list[int]]) -> None:
    expected = outcome(reference.decode, data, cdfs)
    assert outcome(arithmetic.decode, data, cdfs) == expected
    assert outcome(arithmetic.decode, data, arithmetic.prepare(cdfs)) == expected


@st.composite
def mutated(draw: st.DrawFn, code: bytes) -> bytes:
    """``code`` with one small change, the kind that lands next to (or on) another valid code."""
    kind = draw(st.sampled_from(["flip", "byte", "truncate", "append", "insert", "delete", "nudge"]))
    data = bytearray(code)
    if kind in ("flip", "byte", "delete") and not data:
        kind = "append"
    if kind == "flip":
        i = draw(st.integers(0, 8 * len(data) - 1))
        data[i // 8] ^= 0x80 >> (i % 8)
    elif kind == "byte":
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data))) :]
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=3))
    elif kind == "insert":
        data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
    elif kind == "delete":
        del data[draw(st.integers(0, len(data) - 1))]
    else:  # the neighbouring values of the same length: just inside or outside the interval
        value = int.from_bytes(data, "big") + draw(st.integers(-3, 3))
        if 0 <= value < 256 ** len(data):
            data = bytearray(value.to_bytes(len(data), "big"))
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(case=message())
def test_encode_matches_reference(case: tuple[list[list[int]], list[int]]) -> None:
    cdfs, symbols = case
    code = reference.encode(symbols, cdfs)
    prepared = arithmetic.prepare(cdfs)
    assert arithmetic.encode(symbols, cdfs) == code
    assert arithmetic.encode(symbols, prepared) == code
    assert arithmetic.decode(code, cdfs) == symbols
    assert arithmetic.decode(code, prepared) == symbols


@st.composite
def messages(draw: st.DrawFn) -> list[tuple[list[list[int]], list[int]]]:
    """A few messages of one length (0 … 40 positions), each with its own tables."""
    length = draw(st.integers(0, 40))
    return draw(st.lists(message(max_len=length, min_len=length), min_size=1, max_size=6))


@settings(max_examples=150, deadline=None)
@given(batch=messages())
def test_encode_many_gives_encodes_bytes(batch: list[tuple[list[list[int]], list[int]]]) -> None:
    """Composing intervals pairwise in arrays (one-symbol tables included) changes no byte."""
    cum = np.array([[cdf[s] for cdf, s in zip(*m, strict=True)] for m in batch], np.int64)
    freq = np.array([[cdf[s + 1] - cdf[s] for cdf, s in zip(*m, strict=True)] for m in batch], np.int64)
    cum, freq = cum.reshape(len(batch), -1), freq.reshape(len(batch), -1)
    assert arithmetic.encode_many(cum, freq) == [arithmetic.encode(symbols, cdfs) for cdfs, symbols in batch]


def test_encode_many_checks_its_arrays() -> None:
    with pytest.raises(ValueError, match="must be \\(messages, positions\\) arrays"):
        arithmetic.encode_many(np.zeros((2, 3), np.int64), np.ones((2, 4), np.int64))
    assert arithmetic.encode_many(np.zeros((3, 0), np.int64), np.zeros((3, 0), np.int64)) == [b""] * 3


@settings(max_examples=400, deadline=None)
@given(case=message(), data=st.data())
def test_decode_matches_reference_on_changed_codes(
    case: tuple[list[list[int]], list[int]], data: st.DataObject
) -> None:
    cdfs, symbols = case
    code = reference.encode(symbols, cdfs)
    for _ in range(3):
        assert_decoders_agree(data.draw(mutated(code)), cdfs)


@settings(max_examples=300, deadline=None)
@given(cdfs=st.lists(cdf_table(), max_size=12), data=st.data())
def test_decode_matches_reference_on_any_bytes(cdfs: list[list[int]], data: st.DataObject) -> None:
    # short strings: most are refused, but some are the encoding of something
    assert_decoders_agree(data.draw(st.binary(max_size=min(2 * len(cdfs) + 2, 6))), cdfs)
    assert_decoders_agree(data.draw(st.binary(max_size=2 * len(cdfs) + 2)), cdfs)


@pytest.mark.parametrize(("top", "joint_limit"), [(18, 1), (20, 256), (24, 65536), (52, 1), (52, 65536)])
@settings(max_examples=60, deadline=None)
@given(case=message(max_len=10), data=st.data())
def test_coarse_estimates_and_other_runs_change_nothing(
    top: int, joint_limit: int, case: tuple[list[list[int]], list[int]], data: st.DataObject
) -> None:
    # A coarse quotient estimate takes the exact-division path often; a joint limit of 1 codes every
    # position alone, 65536 makes long runs (lookup tables past a byte). The results must not move.
    cdfs, symbols = case
    code = reference.encode(symbols, cdfs)
    with (
        mock.patch.object(arithmetic, "_TOP", top),
        mock.patch.object(arithmetic, "_JOINT_LIMIT", joint_limit),
    ):
        prepared = arithmetic.prepare(cdfs)
        assert arithmetic.encode(symbols, prepared) == code
        assert arithmetic.decode(code, cdfs) == arithmetic.decode(code, prepared) == symbols
        for _ in range(3):
            changed = data.draw(mutated(code))
            expected = outcome(reference.decode, changed, cdfs)
            assert outcome(arithmetic.decode, changed, cdfs) == expected
            assert outcome(arithmetic.decode, changed, prepared) == expected


@settings(max_examples=200, deadline=None)
@given(cdfs=st.lists(cdf_table(), max_size=10), data=st.data())
def test_bad_symbols_raise_the_same_error(cdfs: list[list[int]], data: st.DataObject) -> None:
    symbols = [data.draw(st.integers(-2, len(cdf))) for cdf in cdfs]

    def result(tables: Any) -> bytes | str:
        try:
            return arithmetic.encode(symbols, tables)
        except ValueError as exc:
            return f"ValueError: {exc}"

    try:
        expected: bytes | str = reference.encode(symbols, cdfs)
    except ValueError as exc:
        expected = f"ValueError: {exc}"
    assert result(cdfs) == expected
    assert result(arithmetic.prepare(cdfs)) == expected


def test_prepared_tables() -> None:
    cdfs = [[0, TOTAL], [0, 1, TOTAL], [0, TOTAL], [0, 100, 30000, TOTAL], [0, TOTAL]]
    prepared = arithmetic.prepare(cdfs)
    assert arithmetic.prepare(prepared) is prepared and len(prepared) == 5
    with pytest.raises(ValueError, match="2 symbols but 5 tables"):
        arithmetic.encode([0, 0], prepared)
    with pytest.raises(ValueError, match="symbol 1 at position 2"):
        arithmetic.encode([0, 0, 1, 0, 0], prepared)
    with pytest.raises(ValueError, match="increase strictly"):
        arithmetic.prepare([[0, 5, 5, TOTAL]])
    nothing = arithmetic.prepare([[0, TOTAL]] * 3)  # nothing to code: only b"" is an encoding
    assert arithmetic.encode([0, 0, 0], nothing) == b"" and arithmetic.decode(b"", nothing) == [0, 0, 0]
    with pytest.raises(BadCodeError):
        arithmetic.decode(b"\x80", nothing)
    empty = arithmetic.prepare([])
    assert arithmetic.encode([], empty) == b"" and arithmetic.decode(b"", empty) == []
