"""The code format: what the sender emits and the receiver reads, byte by byte.

Every code starts with one byte whose top three bits are the format version; a reader looks
at those bits first and refuses versions it does not know (``UnsupportedVersionError``), so
later formats can change everything after that byte. Version 0 is reserved. This build writes
v1 (the 8-bit ``seed`` model) and v7 (the entropy-coded ladder; ``LADDER_FORMAT``), and reads
both; it refuses v2 … v6 (see below). Version 7 is the last number the three bits hold, so v7
keeps a way out: a v7 byte 0 with level 0 says the format version continues in byte 1 (an
*extended* version, refused as unsupported by this build; no code carries one yet).

Format v1 (all integers big-endian)::

    offset  size  field
    0       1     0x20: version 1 in bits 7..5; bits 4..0 reserved, must be 0
    1       8     model id: the 8 bytes whose hex is the checkpoint's model_id
    9       2     payload length L
    11      L     payload: the latent quantized to 8 bits, C×H×W order (seed preset: 1,568 bytes)
    11+L    4     CRC-32 (IEEE 802.3, as zlib.crc32) of bytes 0 .. 10+L

A v1 code is 15 + L bytes. The reader checks, in this order, before it allocates or decodes
anything: the version, the minimum length, that the length field matches the code's size
exactly (truncated codes and trailing bytes are refused), the CRC (corruption), and last the
model id (a well-formed code from another model, ``ForeignModelError``).

Format v7 (entropy-coded models of the quality ladder), two bytes of framing::

    offset  size  field
    0       1     bits 7..5: version 7; bit 4: denoising variant; bits 3..1: quality level 1..7
                  (0: an extended version in byte 1); bit 0: bit 8 (the top bit) of the check
    1       1     bits 7..0 of the check
    2       L     payload: the arithmetic-coded latent (L = code length − 2; may be 0)

    check = the first 9 bits (big-endian) of BLAKE2b(header ‖ payload; key = model id,
            digest_size = 2, person = b"latentwire code"), where header is byte 0 with bit 0
            cleared

The level names which decoder of the receiver's ladder made the code; the 9-bit check, keyed by
that decoder's model id (its 8 bytes), covers the version, the variant, the level and the
payload, whose length BLAKE2 commits to. A keyed hash is no linear function of its input, so
every kind of damage — a relabelled level or variant, a truncated or extended code, changed
bits, a code from another model — passes it 1 time in 512, whatever the payload's length; the
arithmetic decoder, which accepts only the exact encoding of what it decoded, refuses most of
the rest. (Integrity, not authenticity: model ids are public, so anyone can make a code that
passes.) The reader checks, in this order: the version; at least 2 bytes; level ≠ 0 (else an
extended version: ``UnsupportedVersionError``); that
the ladder serves that level (``ForeignModelError``); that L is at most the model's longest
possible payload (a bound from its coding tables, before anything is hashed or decoded); the
check, first under each model the level served before it was retrained (``RetiredModelError``,
below), then under its model; the arithmetic decoder.

Retired model ids (a level retrained within v7): the new model's checkpoint lists the models it
replaces, and the check is tried under each of them first: an old code passes its own model's
check, so every one is refused by name. A sender never emits a code that also passes a retired
check (1 payload in 512 per retired model would: ``retired_check_clash``; ``codec.Compressor``
codes a neighbouring latent instead), so such a code is always a retired model's.

Formats v3, v4, v5 and v6 (v7's layout byte for byte, with version 3, 4, 5 or 6) are no longer
read: the ladder that made them was retrained (v3: levels 1-3 and the denoiser, issue 10; v4:
level 1, in issue 10's second round; v5: levels 2, 3 and the denoiser, in its third round; v6:
levels 2-5 and the denoiser, in its fourth). A code of a
retrained level has its check keyed by a model id the receiver no longer serves, so read as
today's model of its level it would be refused as corrupted 511 times in 512 and decoded into a
wrong digit the 512th; the version bump makes the refusal certain (``UnsupportedVersionError``)
and says why. One rule for every level: codes of the levels that kept their models are refused
too, although their payloads are those of today's v7 codes.

Format v2 (the same layout with version 2, but the check was the low byte of CRC-32(model id ‖
byte 0 ‖ payload)) is refused with ``UnsupportedVersionError``: CRC is linear, so whether a
flip of the level or variant bits was caught depended on the payload's length alone — at 11
bytes never, which turned a q3 code into a q3-denoise code that decoded into another digit.

Batch containers (``application/x-latentwire-batch``), for many codes in one body::

    container v1 (any codes)               container v7 (v7 codes of one model)
    0  2  b"LB"                            0  2  b"LB"
    2  1  1                                2  1  the codes' shared header: a v7 byte 0 with bit 0
    3  …  per code: LEB128 length, code             (the check's) clear (0xE2 … 0xFE: its version
                                                    bits, 7, say container v7; variant, level)
                                           3  4  tag: BLAKE2b(bytes 0..2 ‖ bytes 7..end; key =
                                                 model id, digest_size = 4,
                                                 person = b"latentwire batch")
                                           7  …  per code: LEB128 length, payload

In container v7 the codes share one 7-byte header with a 32-bit tag: 1 + 7/N bytes of framing
per code (payloads are under 128 bytes), under 1.5 from 15 codes up. Its codes cannot be
relabelled one by one: they have no byte 0 of their own. The reader refuses a shared byte
with bit 0 set, checks the tag before it splits anything, then rebuilds each standalone v7 code
with its own 9-bit check (which the receiver opens like any other). Containers v3 … v6 (the same
layout with version bits 3 … 6) are refused like their codes, container v2
(b"LB\x02", CRC-32 tag, v2 codes) like v2 codes.

See docs/bitstream.md for the same, with examples and measured acceptance rates.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

from latentwire.errors import (
    BadCodeError,
    ForeignModelError,
    RetiredModelError,
    TooLargeError,
    UnsupportedVersionError,
)

__all__ = [
    "BATCH_MEDIA_TYPE",
    "FORMAT_V1",
    "FORMAT_V2",
    "FORMAT_V3",
    "FORMAT_V4",
    "FORMAT_V5",
    "FORMAT_V6",
    "FORMAT_V7",
    "FRAMING_BYTES",
    "LADDER_FORMAT",
    "MAX_LEVEL",
    "MODEL_ID_BYTES",
    "READ_VERSIONS_HINT",
    "CodeHeader",
    "ladder_check",
    "model_id_bytes",
    "pack_batch",
    "pack_ladder",
    "pack_ladder_batch",
    "pack_v1",
    "read_header",
    "retired_check_clash",
    "unpack_batch",
    "unpack_ladder",
    "unpack_v1",
]

FORMAT_V1 = 1
FORMAT_V2 = 2  # no longer read (see the module docstring); the number stays taken
FORMAT_V3 = 3  # no longer read: the ladder was retrained (issue 10); the number stays taken
FORMAT_V4 = 4  # no longer read: level 1 was retrained (issue 10, second round); the number stays taken
FORMAT_V5 = 5  # no longer read: levels 2, 3 and the denoiser were retrained (issue 10, third round)
FORMAT_V6 = 6  # no longer read: levels 2-5 and the denoiser were retrained (issue 10, fourth round)
FORMAT_V7 = 7  # the last number of three bits: level 0 of it escapes to a version in byte 1
#: The format the quality ladder's codes are written in (the functions named ``*ladder*``).
LADDER_FORMAT = FORMAT_V7
MAX_LEVEL = 7  # the ladder format's byte 0 has 3 level bits; the shipped ladder uses 1..6
MODEL_ID_BYTES = 8
BATCH_MEDIA_TYPE = "application/x-latentwire-batch"
READ_VERSIONS_HINT = (
    "this receiver reads code format versions 1 and 7; re-encode the digit with a current sender"
)

_VERSION_SHIFT = 5
_V1_HEADER = struct.Struct(">B8sH")  # version byte, model id, payload length
_CRC = struct.Struct(">I")
_V1_OVERHEAD = _V1_HEADER.size + _CRC.size  # 15 bytes
#: Bytes a standalone code adds to its payload, by format version.
FRAMING_BYTES = {FORMAT_V1: _V1_OVERHEAD, LADDER_FORMAT: 2}
_BATCH_MAGIC = b"LB\x01"
_BATCH_V2_MAGIC = b"LB\x02"
_BATCH_HEADER = 7  # container v7: magic, the codes' byte 0, 4-byte tag
_BATCH_V2_HEADER = 8  # container v2: magic, version 2, byte 0, CRC-32
_TAG_BYTES = 4
_CODE_PERSON = b"latentwire code"
_BATCH_PERSON = b"latentwire batch"
_DENOISE_BIT = 0x10
_LEVEL_SHIFT = 1
_LEVEL_MASK = 0x07  # after the shift
_CHECK_TOP_BIT = 0x01  # bit 0 of a ladder code's byte 0: bit 8 of the 9-bit check
_CHECK_BITS = 9
# Why each retired format is refused: the same reason for its codes and its batch containers.
_RETIRED: dict[int, str] = {
    FORMAT_V2: "it could not tell relabelled codes apart",
    FORMAT_V3: "it was made by the quality ladder before issue 10, whose levels 1-3 and denoiser "
    "were retrained since",
    FORMAT_V4: "it was made by the quality ladder before issue 10's second round, whose level 1 "
    "was retrained since",
    FORMAT_V5: "it was made by the quality ladder before issue 10's third round, whose levels 2, 3 "
    "and denoiser were retrained since",
    FORMAT_V6: "it was made by the quality ladder before issue 10's fourth round, whose levels 2-5 "
    "and denoiser were retrained since",
}


def _refuse_retired(version: int, *, container: bool = False) -> UnsupportedVersionError:
    what = "batch container" if container else "code format"
    return UnsupportedVersionError(
        f"{what} v{version} is no longer read: {_RETIRED[version]}; re-encode with this sender",
        hint=READ_VERSIONS_HINT,
    )


class CodeHeader(NamedTuple):
    """What a code's first bytes say about who can decode it."""

    version: int
    level: int = 0  # ladder format: quality level 1..7
    denoise: bool = False  # ladder format: made by the denoising variant
    model_id: str = ""  # v1: the model id the code carries


@functools.lru_cache(maxsize=64)  # every ladder check keys a hash with it: a dict lookup, not a parse
def model_id_bytes(model_id: str) -> bytes:
    """A model id's 16 hex digits as the 8 bytes a code carries (v1) or is keyed by (v7)."""
    if len(model_id) != 2 * MODEL_ID_BYTES or any(c not in "0123456789abcdef" for c in model_id):
        raise ValueError(f"a model id is 16 lower-case hex digits, got {model_id!r}")
    return bytes.fromhex(model_id)


def pack_v1(*, model_id: str, payload: bytes) -> bytes:
    """Frame ``payload`` as a v1 code made by ``model_id``."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"a v1 payload is at most 65535 bytes, got {len(payload)}")
    head = _V1_HEADER.pack(FORMAT_V1 << _VERSION_SHIFT, model_id_bytes(model_id), len(payload))
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def unpack_v1(code: bytes, *, model_id: str) -> bytes:
    """The payload of a v1 code, once its framing, CRC and model id have been checked.

    >>> code = pack_v1(model_id="00112233445566ff", payload=b"\\x01\\x02")
    >>> unpack_v1(code, model_id="00112233445566ff")
    b'\\x01\\x02'
    """
    header = read_header(code)
    if header.version != FORMAT_V1:
        raise BadCodeError(f"expected a v1 code, got version {header.version}")
    if code[0] & 0x1F:
        raise BadCodeError("reserved bits of the version byte are set: the code is corrupted")
    if len(code) < _V1_OVERHEAD:
        raise BadCodeError(f"the code is truncated: {len(code)} bytes, a v1 code has at least {_V1_OVERHEAD}")
    (length,) = struct.unpack_from(">H", code, 1 + MODEL_ID_BYTES)
    if len(code) != _V1_OVERHEAD + length:
        raise BadCodeError(
            f"the code is {len(code)} bytes but its header says {_V1_OVERHEAD + length}: truncated or padded"
        )
    (crc,) = _CRC.unpack_from(code, len(code) - _CRC.size)
    if zlib.crc32(code[: -_CRC.size]) != crc:
        raise BadCodeError("the code's checksum does not match: it was corrupted in transit")
    if header.model_id != model_id:
        raise ForeignModelError(
            f"the code was made by model {header.model_id}, which this receiver does not serve"
        )
    return code[_V1_HEADER.size : -_CRC.size]


def read_header(code: bytes) -> CodeHeader:
    """The version and routing fields of a code, checked as far as they go without a model.

    Refuses v2 codes (``UnsupportedVersionError``): their check could not tell relabelled codes
    apart; v3 … v6 codes: the ladder that made them was retrained (issue 10); and v7 codes with
    level 0, whose version continues in byte 1: no such extended version is defined yet.
    """
    if not code:
        raise BadCodeError("the code is empty")
    version = code[0] >> _VERSION_SHIFT
    if version == FORMAT_V1:
        if len(code) < _V1_HEADER.size:
            raise BadCodeError(
                f"the code is truncated: {len(code)} bytes, a v1 code has at least {_V1_OVERHEAD}"
            )
        return CodeHeader(version=1, model_id=code[1 : 1 + MODEL_ID_BYTES].hex())
    if version == LADDER_FORMAT:
        if len(code) < 2:
            raise BadCodeError(f"the code is truncated: a v{LADDER_FORMAT} code has at least 2 bytes")
        level = code[0] >> _LEVEL_SHIFT & _LEVEL_MASK
        if level == 0:  # the escape: the version continues in byte 1
            raise UnsupportedVersionError(
                f"code format version {LADDER_FORMAT}.{code[1]} (an extended version) is not supported",
                hint=READ_VERSIONS_HINT,
            )
        return CodeHeader(version=LADDER_FORMAT, level=level, denoise=bool(code[0] & _DENOISE_BIT))
    if version in _RETIRED:
        raise _refuse_retired(version)
    raise UnsupportedVersionError(f"code format version {version} is not supported", hint=READ_VERSIONS_HINT)


def _ladder_header(level: int, denoise: bool) -> int:
    """Byte 0 of a ladder code with its check bit (bit 0) clear."""
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"a ladder code's level is 1 … {MAX_LEVEL}, got {level}")
    return LADDER_FORMAT << _VERSION_SHIFT | (_DENOISE_BIT if denoise else 0) | level << _LEVEL_SHIFT


def ladder_check(model_id: str, first: int, payload: bytes) -> int:
    """The 9-bit check of a ladder code (0 … 511): its top bit is bit 0 of byte 0, the rest byte 1.

    The first 9 bits of BLAKE2b(header ‖ payload), keyed by the model id, 2-byte digest, where
    header is ``first`` (byte 0) with bit 0 cleared.

    >>> ladder_check("0123456789abcdef", 0xE6, b"\\xab\\xcd")
    467
    """
    digest = hashlib.blake2b(
        bytes([first & ~_CHECK_TOP_BIT]) + payload,
        key=model_id_bytes(model_id),
        digest_size=2,
        person=_CODE_PERSON,
    )
    return int.from_bytes(digest.digest(), "big") >> (16 - _CHECK_BITS)


def _frame_ladder(header: int, model_id: str, payload: bytes) -> bytes:
    check = ladder_check(model_id, header, payload)
    return bytes([header | check >> 8, check & 0xFF]) + payload


def _batch_tag(model_id: str, head: bytes, body: bytes) -> bytes:
    digest = hashlib.blake2b(key=model_id_bytes(model_id), digest_size=_TAG_BYTES, person=_BATCH_PERSON)
    digest.update(head)
    digest.update(body)
    return digest.digest()


def pack_ladder(*, level: int, denoise: bool, model_id: str, payload: bytes) -> bytes:
    """Frame an entropy-coded ``payload`` as a ladder code (format v7) of ``model_id`` at ``level``."""
    return _frame_ladder(_ladder_header(level, denoise), model_id, payload)


def unpack_ladder(
    code: bytes, *, model_id: str, max_payload: int | None = None, retired_model_ids: Sequence[str] = ()
) -> bytes:
    """The payload of a ladder code, once its length is within ``max_payload`` and its check matches.

    The length is checked first, so an overlong code costs neither a hash nor a decode. A code
    whose check matches one of ``retired_model_ids`` (the models its level served before this
    one) is refused as that model's (``RetiredModelError``), even where this model's check
    matches too: this model's senders never emit such a code (``retired_check_clash``).
    """
    header = read_header(code)
    if header.version != LADDER_FORMAT:
        raise BadCodeError(f"expected a v{LADDER_FORMAT} code, got version {header.version}")
    payload = code[2:]
    if max_payload is not None and len(payload) > max_payload:
        raise BadCodeError(
            f"the code's payload is {len(payload)} bytes, longer than any code of its model "
            f"(at most {max_payload}): padded or corrupted"
        )
    check = (code[0] & _CHECK_TOP_BIT) << 8 | code[1]
    for retired in retired_model_ids:
        if ladder_check(retired, code[0], payload) == check:
            raise _refuse_retired_model(retired, header)
    if ladder_check(model_id, code[0], payload) != check:
        raise BadCodeError(
            "the code's check does not match: "
            "it was corrupted, or made by a model this receiver does not serve",
            hint="compare GET /v1/model of the sender and the receiver; resend the code unchanged",
        )
    return payload


def retired_check_clash(
    *, level: int, denoise: bool, payload: bytes, model_id: str, retired_model_ids: Sequence[str]
) -> bool:
    """Whether the ladder code of ``payload`` would also pass a retired model's check.

    A receiver refuses such a code as the retired model's (``unpack_ladder``), so a sender must
    code the latent differently (``codec.Compressor`` does): it happens to 1 payload in 512 per
    retired model.
    """
    header = _ladder_header(level, denoise)
    check = ladder_check(model_id, header, payload)
    return any(ladder_check(retired, header, payload) == check for retired in retired_model_ids)


def _refuse_retired_model(retired: str, header: CodeHeader) -> RetiredModelError:
    kind = "denoising " if header.denoise else ""
    return RetiredModelError(
        f"the code was made by model {retired}, which {kind}quality level {header.level} served "
        "before it was retrained; this receiver no longer decodes its codes"
    )


def pack_ladder_batch(*, level: int, denoise: bool, model_id: str, payloads: list[bytes]) -> bytes:
    """Payloads of one ladder model in a container sharing one header and one 4-byte tag."""
    body = bytearray()
    for payload in payloads:
        _write_varint(len(payload), body)
        body += payload
    head = b"LB" + bytes([_ladder_header(level, denoise)])
    return head + _batch_tag(model_id, head, bytes(body)) + bytes(body)


def _write_varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise BadCodeError("the batch container is truncated inside a length field")
        if shift > 28:  # lengths beyond 2**35 are nonsense here; refuse before looping further
            raise BadCodeError("a length field in the batch container is too long")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def pack_batch(codes: list[bytes]) -> bytes:
    """Concatenate codes into one batch container."""
    out = bytearray(_BATCH_MAGIC)
    for code in codes:
        _write_varint(len(code), out)
        out += code
    return bytes(out)


def _split(data: bytes, pos: int, *, max_codes: int) -> list[bytes]:
    parts: list[bytes] = []
    while pos < len(data):
        if len(parts) >= max_codes:
            raise TooLargeError(
                f"the batch holds more than {max_codes} codes", hint=f"send at most {max_codes}"
            )
        length, pos = _read_varint(data, pos)
        if pos + length > len(data):
            raise BadCodeError(f"code {len(parts)} of the batch container is truncated")
        parts.append(data[pos : pos + length])
        pos += length
    return parts


def unpack_batch(
    data: bytes,
    *,
    max_codes: int,
    model_id_for: Callable[[int, bool], str],
    retired_for: Callable[[int, bool], Sequence[str]] | None = None,
) -> list[bytes]:
    """Split a batch container (v1 or v7) into standalone codes; refuse more than ``max_codes``.

    ``model_id_for(level, denoise)`` names the model whose id keys a v7 container's tag, and
    ``retired_for(level, denoise)`` the models that level served before: a container whose tag
    one of them keys is refused as that model's (``RetiredModelError``).
    """
    if data.startswith(_BATCH_MAGIC):
        return _split(data, len(_BATCH_MAGIC), max_codes=max_codes)
    hint = (
        f"a {BATCH_MEDIA_TYPE} body starts with b'LB\\x01' (container v1), or b'LB' and a "
        f"v{LADDER_FORMAT} code's byte 0 (container v{LADDER_FORMAT}; see docs/bitstream.md)"
    )
    if len(data) < 3 or not data.startswith(b"LB"):
        raise BadCodeError("not a latentwire batch container", hint=hint)
    if data.startswith(_BATCH_V2_MAGIC):
        if len(data) < _BATCH_V2_HEADER:
            raise BadCodeError("the batch container is truncated inside its header")
        raise _refuse_retired(FORMAT_V2, container=True)
    version = data[2] >> _VERSION_SHIFT
    # every retired format since v3 had a container led by its codes' byte 0; v2's had its own
    # magic (above), so b'LB' and a v2 byte 0 was never a container
    if version in _RETIRED and version != FORMAT_V2:
        if len(data) < _BATCH_HEADER:
            raise BadCodeError("the batch container is truncated inside its header")
        raise _refuse_retired(version, container=True)
    if version != LADDER_FORMAT:
        raise BadCodeError(
            f"not a latentwire batch container: unknown container byte 0x{data[2]:02x}", hint=hint
        )
    if len(data) < _BATCH_HEADER:
        raise BadCodeError("the batch container is truncated inside its header")
    if data[2] & _CHECK_TOP_BIT:
        raise BadCodeError(
            f"the batch container's shared byte 0x{data[2]:02x} has bit 0 (a code's check bit) set: "
            "corrupted",
            hint=hint,
        )
    if not data[2] >> _LEVEL_SHIFT & _LEVEL_MASK:  # byte 3 is the tag, not a version: name none
        raise UnsupportedVersionError(
            f"a batch container of an extended version of code format v{LADDER_FORMAT} (level 0 in its "
            "shared byte) is not supported",
            hint=READ_VERSIONS_HINT,
        )
    header = read_header(data[2:4])
    model_id = model_id_for(header.level, header.denoise)
    tag = data[3:_BATCH_HEADER]
    for retired in retired_for(header.level, header.denoise) if retired_for else ():
        if _batch_tag(retired, data[:3], data[_BATCH_HEADER:]) == tag:
            raise _refuse_retired_model(retired, header)
    if _batch_tag(model_id, data[:3], data[_BATCH_HEADER:]) != tag:
        raise BadCodeError(
            "the batch container's check does not match: "
            "corrupted, or made by a model this receiver does not serve"
        )
    payloads = _split(data, _BATCH_HEADER, max_codes=max_codes)
    return [_frame_ladder(data[2], model_id, p) for p in payloads]
