"""Every refusal of the sender and the receiver, in process: status, JSON shape and machine code.

Each request goes through ``httpx.ASGITransport``, which re-raises any exception the app lets
escape: a request that would have been a 500 fails its test with the traceback.
"""

from __future__ import annotations

import base64
import io
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from latentwire import bitstream
from latentwire.codec import Compressor
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import png_bytes
from latentwire_receiver.main import create_app as create_receiver
from latentwire_receiver.settings import ReceiverSettings
from latentwire_sender.main import create_app as create_sender
from latentwire_sender.settings import SenderSettings
from tests.service.conftest import assert_error

pytestmark = pytest.mark.anyio

OCTET = {"Content-Type": "application/octet-stream"}
PNG = {"Content-Type": "image/png"}
TIGHT_BODY = 2048  # bytes
TIGHT_PIXELS = 32 * 32  # a 28×28 digit fits, a 40×40 image does not
TIGHT_BATCH = 2
TIGHT_SCALE = 4


# --------------------------------------------------------------------------- apps and inputs


@pytest.fixture(scope="module")
def sender_app(encoder_ladder: EncoderLadder) -> FastAPI:
    return create_sender(
        SenderSettings(max_body_bytes=1 << 20, max_image_pixels=4096 * 4096, max_batch=256),
        ladder=encoder_ladder,
    )


@pytest.fixture(scope="module")
def tight_sender(encoder_ladder: EncoderLadder) -> FastAPI:
    return create_sender(
        SenderSettings(max_body_bytes=TIGHT_BODY, max_image_pixels=TIGHT_PIXELS, max_batch=TIGHT_BATCH),
        ladder=encoder_ladder,
    )


@pytest.fixture(scope="module")
def receiver_app(decoder_ladder: DecoderLadder) -> FastAPI:
    return create_receiver(
        ReceiverSettings(max_body_bytes=1 << 20, max_batch=1024, max_scale=16), ladder=decoder_ladder
    )


@pytest.fixture(scope="module")
def tight_receiver(decoder_ladder: DecoderLadder) -> FastAPI:
    return create_receiver(
        ReceiverSettings(max_body_bytes=TIGHT_BODY, max_batch=TIGHT_BATCH, max_scale=TIGHT_SCALE),
        ladder=decoder_ladder,
    )


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    """A 28×28 white-on-black stroke: a valid image (this file does not need MNIST)."""
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    return png_bytes(image)


@pytest.fixture(scope="module")
def codes(compressor: Compressor) -> list[bytes]:
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    return compressor.compress(images)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` with its lifespan running (ASGITransport alone does not run it)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def post(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    async with serving(app) as client:
        return await client.post(path, **kwargs)


async def get(app: FastAPI, path: str) -> httpx.Response:
    async with serving(app) as client:
        return await client.get(path)


def b64url(code: bytes) -> str:
    return base64.urlsafe_b64encode(code).decode("ascii").rstrip("=")


def png_claiming(width: int, height: int) -> bytes:
    """A real 1×1 PNG whose IHDR is patched to claim ``width`` × ``height`` (CRC recomputed)."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    assert data[12:16] == b"IHDR"  # 8-byte signature, 4-byte length, then the chunk type
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # over type + 13 data bytes
    return bytes(data)


def gray_png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), 0).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- the sender


async def test_encode_empty_body(sender_app: FastAPI) -> None:
    assert_error(await post(sender_app, "/encode", content=b"", headers=PNG), 400, "bad_request")


async def test_encode_not_an_image(sender_app: FastAPI) -> None:
    assert_error(
        await post(sender_app, "/encode", content=b"hello, not a picture", headers=PNG), 422, "bad_image"
    )


async def test_encode_multipart_file_not_an_image(sender_app: FastAPI) -> None:
    response = await post(
        sender_app, "/encode", files={"file": ("x.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")}
    )
    assert_error(response, 422, "bad_image")


async def test_encode_multipart_without_a_file(sender_app: FastAPI) -> None:
    form = b'--xyz\r\nContent-Disposition: form-data; name="field"\r\n\r\ntext\r\n--xyz--\r\n'
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    assert_error(await post(sender_app, "/encode", content=form, headers=headers), 400, "bad_request")


async def test_encode_malformed_multipart(sender_app: FastAPI) -> None:
    headers = {"Content-Type": "multipart/form-data"}  # no boundary
    assert_error(await post(sender_app, "/encode", content=b"--x\r\n", headers=headers), 400, "bad_request")


async def test_encode_takes_one_image(sender_app: FastAPI, digit_png: bytes) -> None:
    files = [("files", ("a.png", digit_png, "image/png")), ("files", ("b.png", digit_png, "image/png"))]
    body = assert_error(await post(sender_app, "/encode", files=files), 400, "bad_request")
    assert "/encode/batch" in body["hint"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
async def test_encode_wrong_content_type(
    sender_app: FastAPI, digit_png: bytes, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert_error(
        await post(sender_app, "/encode", content=digit_png, headers=headers), 415, "unsupported_media_type"
    )


async def test_encode_batch_refuses_a_raw_image(sender_app: FastAPI, digit_png: bytes) -> None:
    assert_error(
        await post(sender_app, "/encode/batch", content=digit_png, headers=PNG), 415, "unsupported_media_type"
    )


async def test_encode_too_many_pixels(tight_sender: FastAPI) -> None:
    body = assert_error(
        await post(tight_sender, "/encode", content=gray_png(40), headers=PNG), 413, "too_large"
    )
    assert "1600" in body["detail"]


# beyond Pillow's own bomb limit (twice Image.MAX_IMAGE_PIXELS), and beyond ours only
@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (2**31 - 1, 1), (5000, 5000)])
async def test_encode_decompression_bomb_is_refused_from_the_header(
    sender_app: FastAPI, width: int, height: int
) -> None:
    started = time.monotonic()
    response = await post(sender_app, "/encode", content=png_claiming(width, height), headers=PNG)
    assert_error(response, 413, "too_large")
    assert time.monotonic() - started < 5.0


async def test_encode_image_claiming_more_pixels_than_it_holds(sender_app: FastAPI) -> None:
    """Under the pixel limit, but the data is missing: damaged, 422, and no time spent."""
    started = time.monotonic()
    response = await post(sender_app, "/encode", content=png_claiming(2000, 2000), headers=PNG)
    assert_error(response, 422, "bad_image")
    assert time.monotonic() - started < 5.0


async def test_encode_batch_too_many_files(tight_sender: FastAPI, digit_png: bytes) -> None:
    for count in (TIGHT_BATCH + 1, TIGHT_BATCH + 3):  # at the parser's limit, and past it
        files = [("files", (f"{i}.png", digit_png, "image/png")) for i in range(count)]
        assert_error(await post(tight_sender, "/encode/batch", files=files), 413, "too_large")


async def test_encode_batch_with_one_bad_image(sender_app: FastAPI, digit_png: bytes) -> None:
    files = [("files", ("a.png", digit_png, "image/png")), ("files", ("b.png", b"junk", "image/png"))]
    assert_error(await post(sender_app, "/encode/batch", files=files), 422, "bad_image")


async def test_encode_without_preprocessing_needs_28x28(sender_app: FastAPI) -> None:
    response = await post(
        sender_app, "/encode", params={"preprocess": "false"}, content=gray_png(30), headers=PNG
    )
    body = assert_error(response, 422, "bad_image")
    assert "28x28" in body["detail"]


async def test_encode_bad_query_parameter(sender_app: FastAPI, digit_png: bytes) -> None:
    response = await post(
        sender_app, "/encode", params={"preprocess": "perhaps"}, content=digit_png, headers=PNG
    )
    assert_error(response, 422, "bad_request")


@pytest.mark.parametrize(
    ("params", "status"),
    [({"quality": "7"}, 400), ({"denoise": "true"}, 400), ({"quality": "16"}, 422), ({"quality": "-1"}, 422)],
    ids=["level-not-served", "no-denoiser", "over-15", "negative"],
)
async def test_encode_quality_not_offered(
    sender_app: FastAPI, digit_png: bytes, params: dict[str, str], status: int
) -> None:
    for path in ("/encode", "/encode/batch"):
        response = await post(
            sender_app, path, params=params, files={"file": ("d.png", digit_png, "image/png")}
        )
        assert_error(response, status, "bad_request")


# --------------------------------------------------------------------------- bodies over the limit


async def _chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"\0" * min(size, total - start)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("service", "path", "headers"),
    [
        ("sender", "/encode", PNG),
        ("sender", "/encode/batch", None),
        ("receiver", "/decode", OCTET),
        ("receiver", "/decode/batch", {"Content-Type": bitstream.BATCH_MEDIA_TYPE}),
    ],
)
async def test_body_over_the_limit(
    tight_sender: FastAPI,
    tight_receiver: FastAPI,
    service: str,
    path: str,
    headers: dict[str, str] | None,
    streamed: bool,
) -> None:
    app = tight_sender if service == "sender" else tight_receiver
    size = 4 * TIGHT_BODY
    if headers is None:
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    content: bytes | AsyncIterator[bytes] = _chunks(size) if streamed else b"\0" * size
    with anyio.fail_after(10):
        response = await post(app, path, content=content, headers=headers)
    assert ("content-length" in response.request.headers) is not streamed
    assert_error(response, 413, "too_large")


# --------------------------------------------------------------------------- the receiver: /decode


async def test_decode_empty_body(receiver_app: FastAPI) -> None:
    assert_error(await post(receiver_app, "/decode", content=b"", headers=OCTET), 400, "bad_request")


@pytest.mark.parametrize("content_type", ["image/png", "text/plain", None])
async def test_decode_wrong_content_type(
    receiver_app: FastAPI, codes: list[bytes], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await post(receiver_app, "/decode", content=codes[0], headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_decode_truncated_code(receiver_app: FastAPI, codes: list[bytes]) -> None:
    body = assert_error(
        await post(receiver_app, "/decode", content=codes[0][:-1], headers=OCTET), 422, "bad_code"
    )
    assert "truncated" in body["detail"]


async def test_decode_code_shorter_than_a_header(receiver_app: FastAPI, codes: list[bytes]) -> None:
    assert_error(await post(receiver_app, "/decode", content=codes[0][:5], headers=OCTET), 422, "bad_code")


async def test_decode_corrupted_code(receiver_app: FastAPI, codes: list[bytes]) -> None:
    corrupted = bytearray(codes[0])
    corrupted[20] ^= 0x01  # a payload byte
    body = assert_error(
        await post(receiver_app, "/decode", content=bytes(corrupted), headers=OCTET), 422, "bad_code"
    )
    assert "checksum" in body["detail"]


async def test_decode_code_with_a_corrupted_model_id(receiver_app: FastAPI, codes: list[bytes]) -> None:
    """Corruption is 422 wherever it falls: the CRC covers the model id too; 409 is for intact codes."""
    corrupted = bytearray(codes[0])
    corrupted[3] ^= 0x01  # inside the 8-byte model id
    response = await post(receiver_app, "/decode", content=bytes(corrupted), headers=OCTET)
    assert_error(response, 422, "bad_code")


async def test_decode_code_with_trailing_bytes(receiver_app: FastAPI, codes: list[bytes]) -> None:
    assert_error(
        await post(receiver_app, "/decode", content=codes[0] + b"\0", headers=OCTET), 422, "bad_code"
    )


@pytest.mark.parametrize(
    "first", [0xE0, 0x00]
)  # version 7 at level 0 (an extended version), version 0 (reserved)
async def test_decode_unknown_version(receiver_app: FastAPI, codes: list[bytes], first: int) -> None:
    code = bytes([first]) + codes[0][1:]
    response = await post(receiver_app, "/decode", content=code, headers=OCTET)
    assert_error(response, 422, "unsupported_version")


async def test_decode_ladder_code_of_a_level_not_served(receiver_app: FastAPI) -> None:
    code = (
        bytes([bitstream.LADDER_FORMAT << 5 | 3 << 1, 0x00]) + b"payload"
    )  # level 3, which a v1 ladder lacks
    assert_error(await post(receiver_app, "/decode", content=code, headers=OCTET), 409, "foreign_model")


async def test_decode_v2_codes_are_no_longer_read(receiver_app: FastAPI) -> None:
    """v2's check could not tell relabelled codes apart (docs/bitstream.md): refused, with the fix."""
    code = bytes([bitstream.FORMAT_V2 << 5 | 3, 0x00]) + b"payload"
    body = assert_error(
        await post(receiver_app, "/decode", content=code, headers=OCTET), 422, "unsupported_version"
    )
    assert "re-encode" in body["detail"] + body["hint"]


@pytest.mark.parametrize("version", [3, 4, 5, 6])
async def test_decode_retired_codes_are_no_longer_read(receiver_app: FastAPI, version: int) -> None:
    """v3 … v6 codes were made by ladders retrained since (issue 10): refused, with the fix."""
    code = bytes([version << 5 | 3 << 1, 0x00]) + b"payload"
    for kwargs in ({"content": code, "headers": OCTET}, {"json": {"code": b64url(code)}}):
        body = assert_error(await post(receiver_app, "/decode", **kwargs), 422, "unsupported_version")
        assert f"v{version} is no longer read" in body["detail"] and "re-encode" in body["detail"]
        assert "versions 1 and 7" in body["hint"]
    container = b"LB" + bytes([code[0]]) + bytes(4) + b"\x07payload"
    response = await post(
        receiver_app, "/decode/batch", content=container, headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE}
    )
    detail = assert_error(response, 422, "unsupported_version")["detail"]
    assert f"container v{version} is no longer read" in detail


async def test_decode_reserved_bits_set(receiver_app: FastAPI, codes: list[bytes]) -> None:
    code = bytes([codes[0][0] | 0x01]) + codes[0][1:]
    assert_error(await post(receiver_app, "/decode", content=code, headers=OCTET), 422, "bad_code")


async def test_decode_foreign_model(receiver_app: FastAPI, other_checkpoint: Path) -> None:
    other = Compressor.from_checkpoint(other_checkpoint)
    (code,) = other.compress(np.zeros((28, 28), np.uint8))
    for kwargs in ({"content": code, "headers": OCTET}, {"json": {"code": b64url(code)}}):
        body = assert_error(await post(receiver_app, "/decode", **kwargs), 409, "foreign_model")
        assert other.model_id in body["detail"]


async def test_decode_a_retired_models_code(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    old = Compressor.from_checkpoint(
        checkpoint_factory(tmp_path / "old", preset="dense-tiny", level=2, seed=1)
    )
    new = checkpoint_factory(
        tmp_path / "new", preset="dense-tiny", level=2, seed=2, retired_model_ids=[old.model_id]
    )
    app = create_receiver(
        ReceiverSettings(max_body_bytes=1 << 20, max_batch=16, max_scale=4), ladder=DecoderLadder.load(new)
    )
    (code,) = old.compress(np.zeros((28, 28), np.uint8))
    for kwargs in ({"content": code, "headers": OCTET}, {"json": {"code": b64url(code)}}):
        body = assert_error(await post(app, "/decode", **kwargs), 409, "retired_model")
        assert f"made by model {old.model_id}, which quality level 2 served" in body["detail"]
        assert "re-encode" in body["hint"]
    container = old.compress_batch(np.zeros((3, 28, 28), np.uint8))
    batch = await post(
        app, "/decode/batch", content=container, headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE}
    )
    assert old.model_id in assert_error(batch, 409, "retired_model")["detail"]
    info = (await get(app, "/v1/model")).json()
    assert info["levels"][0]["retired_model_ids"] == [old.model_id]


@pytest.mark.parametrize("text", ["!!!not base64!!!", "a", "", "   ", "a" * 5, "ab$d"])
async def test_decode_invalid_base64(receiver_app: FastAPI, text: str) -> None:
    assert_error(await post(receiver_app, "/decode", json={"code": text}), 422, "bad_code")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b"{}", b'{"code": 5}', b'"just a string"', b"\xff\xfe"],
    ids=["malformed", "array", "missing-field", "wrong-type", "string", "not-utf8"],
)
async def test_decode_bad_json(receiver_app: FastAPI, body: bytes) -> None:
    response = await post(receiver_app, "/decode", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_request")


async def test_decode_extra_json_fields(receiver_app: FastAPI, codes: list[bytes]) -> None:
    response = await post(receiver_app, "/decode", json={"code": b64url(codes[0]), "scale": 2})
    body = assert_error(response, 400, "bad_request")
    assert "scale" in body["detail"]


async def test_decode_scale_over_the_limit(tight_receiver: FastAPI, codes: list[bytes]) -> None:
    for path in ("/decode", "/decode/batch"):
        response = await post(
            tight_receiver, path, params={"scale": TIGHT_SCALE + 1}, content=codes[0], headers=OCTET
        )
        body = assert_error(response, 400, "bad_request")
        assert str(TIGHT_SCALE) in body["hint"]


@pytest.mark.parametrize("scale", ["0", "-1", "two", "1.5"])
async def test_decode_scale_invalid(receiver_app: FastAPI, codes: list[bytes], scale: str) -> None:
    for path in ("/decode", "/decode/batch"):
        response = await post(receiver_app, path, params={"scale": scale}, content=codes[0], headers=OCTET)
        assert_error(response, 422, "bad_request")


# --------------------------------------------------------------------------- the receiver: /decode/batch


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
async def test_decode_batch_wrong_content_type(
    receiver_app: FastAPI, codes: list[bytes], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await post(receiver_app, "/decode/batch", content=bitstream.pack_batch(codes), headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_decode_batch_empty(receiver_app: FastAPI) -> None:
    assert_error(await post(receiver_app, "/decode/batch", json={"codes": []}), 400, "bad_request")
    container = bitstream.pack_batch([])
    response = await post(
        receiver_app, "/decode/batch", content=container, headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE}
    )
    assert_error(response, 400, "bad_request")


async def test_decode_batch_names_the_bad_code(receiver_app: FastAPI, codes: list[bytes]) -> None:
    corrupted = bytearray(codes[1])
    corrupted[-1] ^= 0xFF  # the CRC
    batch = [codes[0], bytes(corrupted), codes[2]]
    body = assert_error(
        await post(receiver_app, "/decode/batch", json={"codes": [b64url(c) for c in batch]}), 422, "bad_code"
    )
    assert "code 1" in body["detail"]
    response = await post(
        receiver_app,
        "/decode/batch",
        content=bitstream.pack_batch(batch),
        headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE},
    )
    assert "code 1" in assert_error(response, 422, "bad_code")["detail"]


async def test_decode_batch_names_the_code_that_is_not_base64(
    receiver_app: FastAPI, codes: list[bytes]
) -> None:
    response = await post(receiver_app, "/decode/batch", json={"codes": [b64url(codes[0]), "!!not base64!!"]})
    assert "code 1" in assert_error(response, 422, "bad_code")["detail"]


async def test_decode_batch_with_a_foreign_code(
    receiver_app: FastAPI, codes: list[bytes], other_checkpoint: Path
) -> None:
    (foreign,) = Compressor.from_checkpoint(other_checkpoint).compress(np.zeros((28, 28), np.uint8))
    response = await post(receiver_app, "/decode/batch", json={"codes": [b64url(codes[0]), b64url(foreign)]})
    assert "code 1" in assert_error(response, 409, "foreign_model")["detail"]


@pytest.mark.parametrize(
    "container",
    [
        b"XX\x01" + b"\x05hello",
        b"LB\x02",
        b"LB\x01\xff",
        b"LB\x01\x80\x80\x80\x80\x80\x80",
        b"LB\x01\x10short",
        b"L",
    ],
    ids=["magic", "version", "cut-varint", "long-varint", "cut-code", "tiny"],
)
async def test_decode_batch_bad_container(receiver_app: FastAPI, container: bytes) -> None:
    response = await post(
        receiver_app, "/decode/batch", content=container, headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE}
    )
    assert_error(response, 422, "bad_code")


async def test_decode_batch_too_many_codes(tight_receiver: FastAPI, codes: list[bytes]) -> None:
    assert len(codes) > TIGHT_BATCH
    response = await post(tight_receiver, "/decode/batch", json={"codes": [b64url(c) for c in codes]})
    assert_error(response, 413, "too_large")
    response = await post(
        tight_receiver,
        "/decode/batch",
        content=bitstream.pack_batch(codes),
        headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE},
    )
    assert_error(response, 413, "too_large")


async def test_decode_batch_bad_json(receiver_app: FastAPI, codes: list[bytes]) -> None:
    for body in (
        {"codes": b64url(codes[0])},
        {"codes": [b64url(codes[0])], "scale": 2},
        {"code": b64url(codes[0])},
    ):
        assert_error(await post(receiver_app, "/decode/batch", json=body), 400, "bad_request")


# --------------------------------------------------------------------------- readiness, unknown routes


async def test_not_ready_without_a_model() -> None:
    """Before the lifespan loads a model, /readyz says so (no lifespan runs here, so no load)."""
    for app in (create_sender(SenderSettings()), create_receiver(ReceiverSettings())):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "loading"}


async def test_unknown_route_and_method(sender_app: FastAPI, receiver_app: FastAPI) -> None:
    assert_error(await get(sender_app, "/nope"), 404, "http_error")
    response = await get(receiver_app, "/decode")
    assert_error(response, 405, "http_error")
    assert response.headers.get("allow") == "POST"  # RFC 9110: a 405 names the allowed methods


# --------------------------------------------------------------------------- random input


def _post_sync(app: FastAPI, path: str, data: bytes, content_type: str) -> httpx.Response:
    return anyio.run(lambda: post(app, path, content=data, headers={"Content-Type": content_type}))


@given(data=st.binary(max_size=600))
@settings(max_examples=50, deadline=None, database=None)
def test_random_bytes_never_crash_decode(receiver_app: FastAPI, data: bytes) -> None:
    response = _post_sync(receiver_app, "/decode", data, "application/octet-stream")
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "detail", "hint"}


@given(
    data=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b))
)
@settings(max_examples=50, deadline=None, database=None)
def test_random_bytes_never_crash_encode(sender_app: FastAPI, data: bytes) -> None:
    response = _post_sync(sender_app, "/encode", data, "image/png")
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "detail", "hint"}
