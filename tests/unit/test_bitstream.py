"""The code format: golden bytes, round trips, and refusal of anything malformed."""

from __future__ import annotations

import hashlib
import random
import zlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentwire import bitstream
from latentwire.errors import (
    BadCodeError,
    ForeignModelError,
    RetiredModelError,
    TooLargeError,
    UnsupportedVersionError,
)

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


@pytest.mark.parametrize("first", [0x00, 0xE0])  # version 0; version 7 at level 0 (extended)
def test_unknown_versions_are_refused(first: int) -> None:
    code = bytes([first]) + bitstream.pack_v1(model_id=MODEL, payload=b"x")[1:]
    with pytest.raises(UnsupportedVersionError, match="version") as caught:
        bitstream.read_header(code)
    assert "versions 1 and 7" in caught.value.hint


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


def golden_check(first: int, payload: bytes) -> int:
    """docs/bitstream.md's 9-bit check from hashlib alone: byte 0 hashed with its bit 0 clear."""
    digest = hashlib.blake2b(
        bytes([first & 0xFE]) + payload, key=bytes.fromhex(MODEL), digest_size=2, person=b"latentwire code"
    ).digest()
    return int.from_bytes(digest, "big") >> 7  # its first 9 bits


def test_ladder_golden_bytes() -> None:
    """docs/bitstream.md's examples, and the 9-bit check recomputed from hashlib alone."""
    code = bitstream.pack_ladder(level=3, denoise=False, model_id=MODEL, payload=b"\xab\xcd")
    assert code == bytes.fromhex("e7d3abcd")  # header 0xe6, check 467 = 1 1101 0011
    digest = hashlib.blake2b(
        b"\xe6\xab\xcd", key=bytes.fromhex(MODEL), digest_size=2, person=b"latentwire code"
    ).digest()
    assert digest == bytes.fromhex("e9ed")
    check = int.from_bytes(digest, "big") >> 7  # its first 9 bits
    assert (code[0] & 1, code[1]) == (check >> 8, check & 0xFF)
    assert bitstream.ladder_check(MODEL, code[0], code[2:]) == check == 467
    empty = bitstream.pack_ladder(level=7, denoise=True, model_id=MODEL, payload=b"")
    assert empty == bytes.fromhex("ffcd")  # header 0xfe, check 461 = 1 1100 1101
    assert golden_check(0xFE, b"") == 461
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=7, level=3, denoise=False)
    assert bitstream.MAX_LEVEL == 7
    retired = (bitstream.FORMAT_V3, bitstream.FORMAT_V4, bitstream.FORMAT_V5, bitstream.FORMAT_V6)
    assert retired == (3, 4, 5, 6)
    assert bitstream.LADDER_FORMAT == bitstream.FORMAT_V7 == 7
    assert bitstream.FRAMING_BYTES == {1: 15, 7: 2}


def test_ladder_byte_0_layout() -> None:
    """Bits 7..5 version (111), bit 4 variant, bits 3..1 level, bit 0 the check's top bit."""
    for level in range(1, 8):
        for denoise in (False, True):
            code = bitstream.pack_ladder(level=level, denoise=denoise, model_id=MODEL, payload=b"\x05")
            assert code[0] & 0xFE == 0xE0 | (0x10 if denoise else 0) | level << 1
            assert (code[0] & 1) << 8 | code[1] == golden_check(code[0], b"\x05")
            header = bitstream.read_header(code)
            assert (header.version, header.level, header.denoise) == (7, level, denoise)
            flipped = bytes([code[0] ^ 1]) + code[1:]  # the check's top bit: level and variant stay
            assert bitstream.read_header(flipped) == header
            with pytest.raises(BadCodeError, match="check does not match"):
                bitstream.unpack_ladder(flipped, model_id=MODEL)
    tops = Counter(
        bitstream.pack_ladder(level=3, denoise=False, model_id=MODEL, payload=bytes([i]))[0] & 1
        for i in range(256)
    )
    assert tops[0] > 64 and tops[1] > 64  # both halves of the 512 checks occur


@given(payload=st.binary(max_size=64), level=st.integers(1, 7), denoise=st.booleans())
def test_ladder_round_trip(payload: bytes, level: int, denoise: bool) -> None:
    code = bitstream.pack_ladder(level=level, denoise=denoise, model_id=MODEL, payload=payload)
    assert len(code) == len(payload) + 2  # two bytes of framing
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=7, level=level, denoise=denoise)
    assert bitstream.unpack_ladder(code, model_id=MODEL) == payload
    assert bitstream.unpack_ladder(code, model_id=MODEL, max_payload=len(payload)) == payload


def test_ladder_check_catches_foreign_models_and_corruption() -> None:
    code = bitstream.pack_ladder(level=2, denoise=False, model_id=MODEL, payload=b"\x10\x20\x30")
    with pytest.raises(BadCodeError, match="corrupted, or made by a model"):
        bitstream.unpack_ladder(code, model_id=OTHER)
    for i in range(len(code) * 8):  # every single-bit flip of this code is caught by something
        flipped = bytearray(code)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BadCodeError):  # UnsupportedVersionError is one
            bitstream.unpack_ladder(bytes(flipped), model_id=MODEL)
    with pytest.raises(BadCodeError, match="truncated"):
        bitstream.read_header(b"\xe6")
    for level in (0, 8, 15):
        with pytest.raises(ValueError, match="level"):
            bitstream.pack_ladder(level=level, denoise=False, model_id=MODEL, payload=b"")
    with pytest.raises(BadCodeError, match="expected a v7 code"):
        bitstream.unpack_ladder(bitstream.pack_v1(model_id=MODEL, payload=b"x"), model_id=MODEL)


def test_ladder_check_is_not_linear() -> None:
    """Relabelling, truncation and extension pass the check 1 time in 512 whatever the length.

    The v2 check (low byte of a CRC-32) let a flip of the variant bit through for every 11-byte
    payload; the keyed 9-bit BLAKE2 check lets through about 1/512 of them at every length.
    """
    rng = random.Random(8)
    for length in (0, 1, 11, 16, 40):
        passed = Counter[str]()
        trials = 4096
        for _ in range(trials):
            # a fresh model each time: short payloads alone make too few distinct codes to count
            model, payload = rng.randbytes(8).hex(), rng.randbytes(length)
            code = bitstream.pack_ladder(level=3, denoise=False, model_id=model, payload=payload)
            variants = {"relabel": bytes([code[0] ^ 0x10]) + code[1:], "extend": code + rng.randbytes(1)}
            if length:
                variants["truncate"] = code[:-1]
            for kind, mutated in variants.items():
                try:
                    bitstream.unpack_ladder(mutated, model_id=model)
                    passed[kind] += 1
                except BadCodeError:
                    pass
        for kind, count in passed.items():  # expected 8 of 4096; 26 is over 6 standard deviations above
            assert count <= 26, (length, kind, count)


def test_ladder_refuses_a_payload_longer_than_the_models_longest_before_the_check() -> None:
    code = bitstream.pack_ladder(level=3, denoise=False, model_id=MODEL, payload=b"\x01" * 10)
    assert bitstream.unpack_ladder(code, model_id=MODEL, max_payload=10) == b"\x01" * 10
    with pytest.raises(BadCodeError, match="longer than any code of its model"):
        bitstream.unpack_ladder(code, model_id=MODEL, max_payload=9)
    bad_check = bytes([code[0] ^ 1, code[1] ^ 1]) + code[2:]
    with pytest.raises(BadCodeError, match="longer than any"):  # the length is checked first
        bitstream.unpack_ladder(bad_check, model_id=MODEL, max_payload=9)


# docs/bitstream.md's former examples (payload ab cd at level 3): valid v3, v4, v5 and v6 codes of
# MODEL, check and all, with the level-0, truncated and denoising byte 0s of their versions.
RETIRED_CODES = {
    3: ("6701abcd", 0x66, 257, ("60", "7e0c", "71")),
    4: ("877fabcd", 0x86, 383, ("80", "9e0c", "91")),
    5: ("a76babcd", 0xA6, 363, ("a0", "be0c", "b1")),
    6: ("c72dabcd", 0xC6, 301, ("c0", "de0c", "d1")),
}


@pytest.mark.parametrize("version", sorted(RETIRED_CODES))
def test_retired_codes_are_refused_with_a_reason(version: int) -> None:
    """v3 … v6: v7's layout with version 3 … 6 (models retired): refused however well-formed."""
    example, header, check, others = RETIRED_CODES[version]
    code = bytes.fromhex(example)
    assert golden_check(header, code[2:]) == check and code[0] == header | check >> 8
    for damaged in (code, code[:1], *map(bytes.fromhex, others)):  # also truncated, level 0, …
        for read in (bitstream.read_header, lambda c: bitstream.unpack_ladder(c, model_id=MODEL)):
            with pytest.raises(
                UnsupportedVersionError, match=f"code format v{version} is no longer read"
            ) as caught:
                read(damaged)
            assert caught.value.code == "unsupported_version"
            assert "re-encode" in caught.value.message and "issue 10" in caught.value.message
            assert "versions 1 and 7" in caught.value.hint
    rounds = {3: "before issue 10,", 4: "second round", 5: "third round", 6: "fourth round"}
    assert rounds[version] in caught.value.message  # which retraining retired it
    # the same payload, framed as v7 by the same model: only the version bits and the check differ
    assert bitstream.pack_ladder(level=3, denoise=False, model_id=MODEL, payload=code[2:]) == bytes.fromhex(
        "e7d3abcd"
    )


def test_ladder_level_0_escapes_to_an_extended_version() -> None:
    """Version 7 is the last of three bits: level 0 says the version goes on in byte 1."""
    for first in (0xE0, 0xE1, 0xF0, 0xF1):  # level 0, whatever the variant and the check bit
        for second in (0x00, 0x08, 0xFF):
            with pytest.raises(UnsupportedVersionError, match=f"version 7.{second} ") as caught:
                bitstream.read_header(bytes([first, second]) + b"payload")
            assert "versions 1 and 7" in caught.value.hint
    with pytest.raises(BadCodeError, match="truncated"):  # no byte 1: no version to name
        bitstream.read_header(b"\xe0")
    with pytest.raises(UnsupportedVersionError, match="extended version"):  # a container's too
        bitstream.unpack_batch(b"LB\xe0" + bytes(8), max_codes=5, model_id_for=_ids)


def test_v2_codes_are_refused_with_a_reason() -> None:
    payload = b"\xab\xcd"
    v2 = bytes([0x43, zlib.crc32(bytes.fromhex(MODEL) + b"\x43" + payload) & 0xFF]) + payload
    for code in (v2, b"\x53\x00", b"\x40"):
        with pytest.raises(UnsupportedVersionError, match="v2 is no longer read") as caught:
            bitstream.read_header(code)
        assert caught.value.code == "unsupported_version"
        assert "versions 1 and 7" in caught.value.hint


@given(payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=30))
def test_ladder_batch_container_round_trip_and_framing(payloads: list[bytes]) -> None:
    container = bitstream.pack_ladder_batch(level=3, denoise=False, model_id=MODEL, payloads=payloads)
    codes = bitstream.unpack_batch(container, max_codes=30, model_id_for=_ids)
    assert codes == [
        bitstream.pack_ladder(level=3, denoise=False, model_id=MODEL, payload=p) for p in payloads
    ]
    framing = len(container) - sum(map(len, payloads))
    assert framing == 7 + len(payloads)  # one shared 7-byte header, one length byte per code
    if len(payloads) >= 15:
        assert framing / len(payloads) < 1.5


def test_ladder_batch_container_golden_bytes() -> None:
    """docs/bitstream.md's example: payloads ab cd and 01 02 03 of model 0123456789abcdef at level 3."""
    container = bitstream.pack_ladder_batch(
        level=3, denoise=False, model_id=MODEL, payloads=[b"\xab\xcd", b"\x01\x02\x03"]
    )
    assert container == bytes.fromhex("4c42e6" + "1749f304" + "02abcd" + "03010203")
    tag = hashlib.blake2b(
        bytes.fromhex("4c42e6" + "02abcd03010203"),
        key=bytes.fromhex(MODEL),
        digest_size=4,
        person=b"latentwire batch",
    ).digest()
    assert container[3:7] == tag
    codes = bitstream.unpack_batch(container, max_codes=2, model_id_for=_ids)
    assert codes == [bytes.fromhex("e7d3abcd"), bytes.fromhex("e734010203")]  # each its own check
    assert golden_check(0xE6, b"\x01\x02\x03") == 308  # 1 0011 0100


def test_ladder_batch_container_refusals() -> None:
    container = bitstream.pack_ladder_batch(level=3, denoise=False, model_id=MODEL, payloads=[b"ab", b"cd"])
    with pytest.raises(BadCodeError, match="check does not match"):
        bitstream.unpack_batch(container[:-1] + b"\x00", max_codes=5, model_id_for=_ids)
    relabelled = container[:2] + b"\xf6" + container[3:]  # the denoiser's level byte
    with pytest.raises(BadCodeError, match="check does not match"):
        bitstream.unpack_batch(relabelled, max_codes=5, model_id_for=lambda level, denoise: MODEL)
    foreign = bitstream.pack_ladder_batch(level=3, denoise=False, model_id=OTHER, payloads=[b"ab"])
    with pytest.raises(BadCodeError, match="check does not match"):
        bitstream.unpack_batch(foreign, max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="truncated"):
        bitstream.unpack_batch(container[:6], max_codes=5, model_id_for=_ids)
    with_check_bit = container[:2] + bytes([container[2] | 1]) + container[3:]
    with pytest.raises(BadCodeError, match="bit 0"):  # the shared byte has no check bit
        bitstream.unpack_batch(with_check_bit, max_codes=5, model_id_for=_ids)
    with pytest.raises(TooLargeError):
        bitstream.unpack_batch(container, max_codes=1, model_id_for=_ids)
    # no container version 3, 4 or 5 byte; v1, v2 and v0 codes' byte 0
    for head in (b"LB\x03", b"LB\x04", b"LB\x05", b"LB\x26", b"LB\x46", b"LB\x06"):
        with pytest.raises(BadCodeError, match="not a latentwire batch container") as caught:
            bitstream.unpack_batch(head + bytes(8), max_codes=5, model_id_for=_ids)
        assert not isinstance(caught.value, UnsupportedVersionError)


# docs/bitstream.md's former examples: valid containers v3, v4, v5 and v6 of MODEL, tag and all
RETIRED_CONTAINERS = {
    3: ("4c4266" + "32bb5274" + "02abcd" + "03010203", ("4c4260", "4c427e")),
    4: ("4c4286" + "df5ab9be" + "02abcd" + "03010203", ("4c4280", "4c429e")),
    5: ("4c42a6" + "2eae68d4" + "02abcd" + "03010203", ("4c42a0", "4c42be")),
    6: ("4c42c6" + "a76a8517" + "02abcd" + "03010203", ("4c42c0", "4c42de")),
}


@pytest.mark.parametrize("version", sorted(RETIRED_CONTAINERS))
def test_retired_batch_containers_are_refused(version: int) -> None:
    """Containers v3 … v6 (b"LB", such a byte 0, a tag): refused like their codes, before the tag."""
    example, heads = RETIRED_CONTAINERS[version]
    retired = bytes.fromhex(example)
    tag = hashlib.blake2b(
        retired[:3] + retired[7:], key=bytes.fromhex(MODEL), digest_size=4, person=b"latentwire batch"
    ).digest()
    assert retired[3:7] == tag
    damaged = [bytes.fromhex(head) + bytes(4) for head in heads]
    for container in (retired, retired[:2] + bytes([retired[2] | 1]) + retired[3:], *damaged):
        with pytest.raises(
            UnsupportedVersionError, match=f"container v{version} is no longer read"
        ) as caught:
            bitstream.unpack_batch(container, max_codes=5, model_id_for=_ids)
        assert caught.value.code == "unsupported_version"
        assert "re-encode" in caught.value.message and "versions 1 and 7" in caught.value.hint
    with pytest.raises(BadCodeError, match="truncated"):  # a bare b"LB" + byte 0 is a truncated header first
        bitstream.unpack_batch(retired[:3], max_codes=5, model_id_for=_ids)


def test_v2_batch_containers_are_refused() -> None:
    container = b"LB\x02\x46" + bytes(4) + b"\x02ab"
    with pytest.raises(UnsupportedVersionError, match="container v2 is no longer read"):
        bitstream.unpack_batch(container, max_codes=5, model_id_for=_ids)
    with pytest.raises(BadCodeError, match="truncated"):  # a bare b"LB\x02" is a truncated header first
        bitstream.unpack_batch(b"LB\x02", max_codes=5, model_id_for=_ids)


def test_a_retired_models_codes_and_containers_are_refused_by_name() -> None:
    rng = random.Random(5)
    payloads = [rng.randbytes(rng.randrange(0, 12)) for _ in range(3000)]
    for payload in payloads:  # every one: a retired model's code never passes as today's
        code = bitstream.pack_ladder(level=3, denoise=True, model_id=OTHER, payload=payload)
        with pytest.raises(RetiredModelError, match=f"model {OTHER}, which denoising quality level 3"):
            bitstream.unpack_ladder(code, model_id=MODEL, retired_model_ids=[OTHER])
    container = bitstream.pack_ladder_batch(level=3, denoise=True, model_id=OTHER, payloads=payloads[:5])
    with pytest.raises(RetiredModelError, match=f"model {OTHER}"):
        bitstream.unpack_batch(
            container, max_codes=5, model_id_for=lambda level, denoise: MODEL, retired_for=lambda *_: [OTHER]
        )
    today = bitstream.pack_ladder_batch(level=3, denoise=True, model_id=MODEL, payloads=payloads[:5])
    codes = bitstream.unpack_batch(
        today, max_codes=5, model_id_for=lambda level, denoise: MODEL, retired_for=lambda *_: [OTHER]
    )
    assert [c[2:] for c in codes] == payloads[:5]


def test_a_code_that_passes_both_checks_is_the_retired_models() -> None:
    rng = random.Random(6)
    both = []
    for _ in range(4000):
        payload = rng.randbytes(6)
        clash = bitstream.retired_check_clash(
            level=2, denoise=False, payload=payload, model_id=MODEL, retired_model_ids=[OTHER]
        )
        code = bitstream.pack_ladder(level=2, denoise=False, model_id=MODEL, payload=payload)
        if clash:
            both.append(payload)
            with pytest.raises(RetiredModelError):
                bitstream.unpack_ladder(code, model_id=MODEL, retired_model_ids=[OTHER])
        else:
            assert bitstream.unpack_ladder(code, model_id=MODEL, retired_model_ids=[OTHER]) == payload
    assert 2 <= len(both) <= 20  # 1 in 512 of 4,000: about 8
