"""The code format: what the sender emits and the receiver reads, byte by byte.

Every code starts with one byte whose top three bits are the format version; a reader looks
at those bits first and refuses versions it does not know (``UnsupportedVersionError``), so
later formats can change everything after that byte. Versions 0 and 7 are reserved.

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

Format v2 (entropy-coded models of the quality ladder), two bytes of framing::

    offset  size  field
    0       1     bits 7..5: version 2; bit 4: denoising variant; bits 3..0: quality level 1..15
    1       1     check: the low byte of CRC-32(model id ‖ byte 0 ‖ payload)
    2       L     payload: the arithmetic-coded latent (L = code length − 2; may be 0)

The level byte says which decoder of the receiver's ladder made the code; the check, keyed by
that decoder's model id, catches a corrupted code and a code from another model in one field
(255 times in 256; the arithmetic decoder's own check catches most of the rest).

Batch containers (``application/x-latentwire-batch``), for many codes in one body::

    container v1 (any codes)               container v2 (v2 codes of one model)
    0  2  b"LB"                            0  2  b"LB"
    2  1  1                                2  1  2
    3  …  per code: LEB128 length, code    3  1  the codes' shared byte 0 (version, variant, level)
                                           4  4  CRC-32(model id ‖ every other byte of the container)
                                           8  …  per code: LEB128 length, payload

In container v2 the codes share one header and one check: 1 + 8/N bytes of framing per code.

See docs/bitstream.md for the same, with examples.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

from latentwire.errors import BadCodeError, ForeignModelError, TooLargeError, UnsupportedVersionError

__all__ = [
    "BATCH_MEDIA_TYPE",
    "FORMAT_V1",
    "FORMAT_V2",
    "MAX_LEVEL",
    "MODEL_ID_BYTES",
    "CodeHeader",
    "model_id_bytes",
    "pack_batch",
    "pack_batch_v2",
    "pack_v1",
    "pack_v2",
    "read_header",
    "unpack_batch",
    "unpack_v1",
    "unpack_v2",
]

FORMAT_V1 = 1
FORMAT_V2 = 2
MAX_LEVEL = 15
MODEL_ID_BYTES = 8
BATCH_MEDIA_TYPE = "application/x-latentwire-batch"

_VERSION_SHIFT = 5
_V1_HEADER = struct.Struct(">B8sH")  # version byte, model id, payload length
_CRC = struct.Struct(">I")
_V1_OVERHEAD = _V1_HEADER.size + _CRC.size  # 15 bytes
_BATCH_MAGIC = b"LB\x01"
_BATCH_V2_MAGIC = b"LB\x02"
_DENOISE_BIT = 0x10
_LEVEL_MASK = 0x0F


class CodeHeader(NamedTuple):
    """What a code's first bytes say about who can decode it."""

    version: int
    level: int = 0  # v2: quality level 1..15
    denoise: bool = False  # v2: made by the denoising variant
    model_id: str = ""  # v1: the model id the code carries


def model_id_bytes(model_id: str) -> bytes:
    """A model id's 16 hex digits as the 8 bytes a code carries."""
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
    """The version and routing fields of a code, checked as far as they go without a model."""
    if not code:
        raise BadCodeError("the code is empty")
    version = code[0] >> _VERSION_SHIFT
    if version == FORMAT_V1:
        if len(code) < _V1_HEADER.size:
            raise BadCodeError(
                f"the code is truncated: {len(code)} bytes, a v1 code has at least {_V1_OVERHEAD}"
            )
        return CodeHeader(version=1, model_id=code[1 : 1 + MODEL_ID_BYTES].hex())
    if version == FORMAT_V2:
        if len(code) < 2:
            raise BadCodeError("the code is truncated: a v2 code has at least 2 bytes")
        level = code[0] & _LEVEL_MASK
        if level == 0:
            raise BadCodeError("level 0 is not a quality level: the code is corrupted")
        return CodeHeader(version=2, level=level, denoise=bool(code[0] & _DENOISE_BIT))
    raise UnsupportedVersionError(f"code format version {version} is not supported")


def _v2_first_byte(level: int, denoise: bool) -> int:
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"a v2 level is 1 … {MAX_LEVEL}, got {level}")
    return FORMAT_V2 << _VERSION_SHIFT | (_DENOISE_BIT if denoise else 0) | level


def _keyed_crc(model_id: str, *parts: bytes) -> int:
    crc = zlib.crc32(model_id_bytes(model_id))
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def pack_v2(*, level: int, denoise: bool, model_id: str, payload: bytes) -> bytes:
    """Frame an entropy-coded ``payload`` as a v2 code of ``model_id`` at ``level``."""
    first = bytes([_v2_first_byte(level, denoise)])
    return first + bytes([_keyed_crc(model_id, first, payload) & 0xFF]) + payload


def unpack_v2(code: bytes, *, model_id: str) -> bytes:
    """The payload of a v2 code, once its check matches ``model_id``."""
    header = read_header(code)
    if header.version != FORMAT_V2:
        raise BadCodeError(f"expected a v2 code, got version {header.version}")
    payload = code[2:]
    if _keyed_crc(model_id, code[:1], payload) & 0xFF != code[1]:
        raise BadCodeError(
            "the code's check does not match: "
            "it was corrupted, or made by a model this receiver does not serve",
            hint="compare GET /v1/model of the sender and the receiver; resend the code unchanged",
        )
    return payload


def pack_batch_v2(*, level: int, denoise: bool, model_id: str, payloads: list[bytes]) -> bytes:
    """Payloads of one v2 model in a container sharing one header and one check."""
    body = bytearray()
    for payload in payloads:
        _write_varint(len(payload), body)
        body += payload
    head = _BATCH_V2_MAGIC + bytes([_v2_first_byte(level, denoise)])
    return head + _CRC.pack(_keyed_crc(model_id, head, bytes(body))) + bytes(body)


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


def unpack_batch(data: bytes, *, max_codes: int, model_id_for: Callable[[int, bool], str]) -> list[bytes]:
    """Split a batch container (v1 or v2) into standalone codes; refuse more than ``max_codes``.

    ``model_id_for(level, denoise)`` names the model whose id keys a v2 container's check.
    """
    if data.startswith(_BATCH_MAGIC):
        return _split(data, len(_BATCH_MAGIC), max_codes=max_codes)
    if not data.startswith(_BATCH_V2_MAGIC):
        raise BadCodeError(
            "not a latentwire batch container",
            hint=f"a {BATCH_MEDIA_TYPE} body starts with b'LB\\x01' or b'LB\\x02' (see docs/bitstream.md)",
        )
    if len(data) < 8:
        raise BadCodeError("the batch container is truncated inside its header")
    header = read_header(data[3:4] + b"\x00")
    if header.version != FORMAT_V2:
        raise BadCodeError("a v2 batch container holds v2 codes only")
    model_id = model_id_for(header.level, header.denoise)
    (crc,) = _CRC.unpack_from(data, 4)
    if _keyed_crc(model_id, data[:4], data[8:]) != crc:
        raise BadCodeError(
            "the batch container's check does not match: "
            "corrupted, or made by a model this receiver does not serve"
        )
    first = data[3:4]
    payloads = _split(data, 8, max_codes=max_codes)
    return [first + bytes([_keyed_crc(model_id, first, p) & 0xFF]) + p for p in payloads]
