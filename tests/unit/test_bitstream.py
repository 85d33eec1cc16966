"""The code format: golden bytes, round trips, and refusal of anything malformed."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentwire import bitstream
from latentwire.errors import BadCodeError, ForeignModelError, TooLargeError, UnsupportedVersionError

MODEL = "0123456789abcdef"
OTHER = "fedcba9876543210"


def test_v1_golden_bytes() -> None:
    code = bitstream.pack_v1(model_id=MODEL, payload=b"\x00\x7f\xff")
    head = bytes.fromhex("20" + MODEL + "0003") + b"\x00\x7f\xff"
    assert code == head + zlib.crc32(head).to_bytes(4, "big")
    assert len(code) == 15 + 3


@given(payload=st.binary(max_size=2000))
def test_v1_round_trip(payload: bytes) -> None:
    code = bitstream.pack_v1(model_id=MODEL, payload=payload)
    assert bitstream.unpack_v1(code, model_id=MODEL) == payload
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=1, model_id=MODEL)


@given(payload=st.binary(min_size=1, max_size=64), data=st.data())
def test_any_single_bit_flip_is_refused(payload: bytes, data: st.DataObject) -> None:
    code = bytearray(bitstream.pack_v1(model_id=MODEL, payload=payload))
    bit = data.draw(st.integers(0, len(code) * 8 - 1))
    code[bit // 8] ^= 1 << (bit % 8)
    # a flip in the model id is caught by the CRC before the model id is compared
    with pytest.raises(BadCodeError):
        bitstream.unpack_v1(bytes(code), model_id=MODEL)


@given(payload=st.binary(max_size=64), data=st.data())
def test_truncated_and_padded_codes_are_refused(payload: bytes, data: st.DataObject) -> None:
    code = bitstream.pack_v1(model_id=MODEL, payload=payload)
    cut = data.draw(st.integers(0, len(code) - 1))
    with pytest.raises(BadCodeError):
        bitstream.unpack_v1(code[:cut], model_id=MODEL)
    with pytest.raises(BadCodeError, match="truncated or padded"):
        bitstream.unpack_v1(code + b"\x00", model_id=MODEL)


def test_foreign_model_is_refused() -> None:
    code = bitstream.pack_v1(model_id=OTHER, payload=b"abc")
    with pytest.raises(ForeignModelError, match=OTHER):
        bitstream.unpack_v1(code, model_id=MODEL)


@pytest.mark.parametrize("first", [0x00, 0x60, 0x80, 0xE0])
def test_unknown_versions_are_refused(first: int) -> None:
    code = bytes([first]) + bitstream.pack_v1(model_id=MODEL, payload=b"x")[1:]
    with pytest.raises(UnsupportedVersionError, match="version"):
        bitstream.read_header(code)


def test_reserved_bits_and_empty() -> None:
    code = bytearray(bitstream.pack_v1(model_id=MODEL, payload=b"x"))
    code[0] |= 0x01
    with pytest.raises(BadCodeError, match="reserved"):
        bitstream.unpack_v1(bytes(code), model_id=MODEL)
    with pytest.raises(BadCodeError, match="empty"):
        bitstream.unpack_v1(b"", model_id=MODEL)


def test_pack_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="16 lower-case hex"):
        bitstream.pack_v1(model_id="abc", payload=b"")
    with pytest.raises(ValueError, match="65535"):
        bitstream.pack_v1(model_id=MODEL, payload=bytes(70_000))


def _ids(level: int, denoise: bool) -> str:
    return MODEL if (level, denoise) == (3, False) else OTHER


@given(codes=st.lists(st.binary(max_size=300), max_size=20))
def test_batch_round_trip(codes: list[bytes]) -> None:
    assert bitstream.unpack_batch(bitstream.pack_batch(codes), max_codes=20, model_id_for=_ids) == codes


def test_batch_golden_bytes_and_errors() -> None:
    assert bitstream.pack_batch([b"ab", b"x" * 200]) == b"LB\x01\x02ab\xc8\x01" + b"x" * 200
    with pytest.raises(BadCodeError, match="not a latentwire batch"):
        bitstream.unpack_batch(b"XX\x01", max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="truncated"):
        bitstream.unpack_batch(b"LB\x01\x05ab", max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="length field"):
        bitstream.unpack_batch(b"LB\x01\x80", max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="too long"):
        bitstream.unpack_batch(b"LB\x01" + b"\xff" * 10, max_codes=5, model_id_for=_ids)
    with pytest.raises(TooLargeError):
        bitstream.unpack_batch(bitstream.pack_batch([b"a"] * 6), max_codes=5, model_id_for=_ids)


def test_v2_golden_bytes() -> None:
    code = bitstream.pack_v2(level=3, denoise=False, model_id=MODEL, payload=b"\xab\xcd")
    check = zlib.crc32(bytes.fromhex(MODEL) + b"\x43\xab\xcd") & 0xFF
    assert code == bytes([0x43, check]) + b"\xab\xcd"
    assert bitstream.pack_v2(level=15, denoise=True, model_id=MODEL, payload=b"")[0] == 0x5F
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=2, level=3, denoise=False)


@given(payload=st.binary(max_size=64), level=st.integers(1, 15), denoise=st.booleans())
def test_v2_round_trip(payload: bytes, level: int, denoise: bool) -> None:
    code = bitstream.pack_v2(level=level, denoise=denoise, model_id=MODEL, payload=payload)
    assert len(code) == len(payload) + 2  # two bytes of framing
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=2, level=level, denoise=denoise)
    assert bitstream.unpack_v2(code, model_id=MODEL) == payload


def test_v2_check_catches_foreign_models_and_corruption() -> None:
    code = bitstream.pack_v2(level=2, denoise=False, model_id=MODEL, payload=b"\x10\x20\x30")
    with pytest.raises(BadCodeError, match="corrupted, or made by a model"):
        bitstream.unpack_v2(code, model_id=OTHER)
    caught = 0
    for i in range(1, len(code) * 8):  # every single-bit flip after the version bits
        flipped = bytearray(code)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            bitstream.unpack_v2(bytes(flipped), model_id=MODEL)
        except (BadCodeError, UnsupportedVersionError):
            caught += 1
    assert caught >= len(code) * 8 - 4  # an 8-bit check: a flip in the level bits may pass as another level
    with pytest.raises(BadCodeError, match="level 0"):
        bitstream.read_header(b"\x40\x00")
    with pytest.raises(BadCodeError, match="truncated"):
        bitstream.read_header(b"\x43")
    with pytest.raises(ValueError, match="level"):
        bitstream.pack_v2(level=16, denoise=False, model_id=MODEL, payload=b"")


@given(payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=30))
def test_v2_batch_container_round_trip_and_framing(payloads: list[bytes]) -> None:
    container = bitstream.pack_batch_v2(level=3, denoise=False, model_id=MODEL, payloads=payloads)
    codes = bitstream.unpack_batch(container, max_codes=30, model_id_for=_ids)
    assert codes == [bitstream.pack_v2(level=3, denoise=False, model_id=MODEL, payload=p) for p in payloads]
    framing = len(container) - sum(map(len, payloads))
    assert framing == 8 + len(payloads)  # one shared 8-byte header, one length byte per code


def test_v2_batch_container_refusals() -> None:
    container = bitstream.pack_batch_v2(level=3, denoise=False, model_id=MODEL, payloads=[b"ab", b"cd"])
    with pytest.raises(BadCodeError, match="check does not match"):
        bitstream.unpack_batch(container[:-1] + b"\x00", max_codes=5, model_id_for=_ids)
    foreign = bitstream.pack_batch_v2(level=3, denoise=False, model_id=OTHER, payloads=[b"ab"])
    with pytest.raises(BadCodeError, match="check does not match"):
        bitstream.unpack_batch(foreign, max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="truncated"):
        bitstream.unpack_batch(container[:6], max_codes=5, model_id_for=_ids)
    with pytest.raises(TooLargeError):
        bitstream.unpack_batch(container, max_codes=1, model_id_for=_ids)
