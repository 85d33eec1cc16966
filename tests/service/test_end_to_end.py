"""The sender and the receiver as real uvicorn processes on loopback, driven over HTTP."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from latentwire import bitstream
from latentwire.checkpoint import DECODER_FILE, ENCODER_FILE
from latentwire.codec import Compressor, Decompressor
from latentwire.preprocess import load_digit, png_bytes
from tests.service.conftest import (
    READY_DEADLINE_S,
    Service,
    assert_error,
    free_port,
    service_command,
    service_env,
)

OCTET = {"Accept": "application/octet-stream"}
PNG = {"Content-Type": "image/png"}


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.mode == "L"
        return np.asarray(image)


def encode(http: httpx.Client, sender: Service, png: bytes) -> bytes:
    response = http.post(f"{sender.url}/encode", content=png, headers={**PNG, **OCTET})
    assert response.status_code == 200, response.text
    return response.content


def decode(http: httpx.Client, receiver: Service, code: bytes, scale: int = 1) -> bytes:
    response = http.post(
        f"{receiver.url}/decode",
        params={"scale": scale},
        content=code,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


# --------------------------------------------------------------------------- encoding


def test_encode_answers_json_and_raw_bytes_alike(
    http: httpx.Client, sender: Service, digit_pngs: list[bytes], compressor: Compressor
) -> None:
    png = digit_pngs[0]
    response = http.post(f"{sender.url}/encode", content=png, headers=PNG)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert {"code", "bytes", "model_id"} <= set(body)
    code = b64url_decode(body["code"])
    assert "=" not in body["code"]  # base64url without padding
    assert body["bytes"] == len(code)
    assert body["model_id"] == compressor.model_id == response.headers["x-latentwire-model"]

    raw = http.post(f"{sender.url}/encode", content=png, headers={**PNG, **OCTET})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == code
    # the service gives exactly what the library gives for the same image
    assert [code] == compressor.compress(load_digit(png))


def test_encode_input_is_the_png_of_the_digit_that_was_encoded(
    http: httpx.Client, sender: Service, compressor: Compressor
) -> None:
    """?input=true: the 28×28 PNG of the very array the encoder was given (after preprocessing)."""
    photo = np.full((90, 70), 230, np.uint8)  # dark ink on light paper, not 28×28: normalized first
    photo[15:75, 30:42] = 20
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    image = buffer.getvalue()
    digit = load_digit(image)

    response = http.post(f"{sender.url}/encode", params={"input": "true"}, content=image, headers=PNG)
    assert response.status_code == 200, response.text
    body = response.json()
    code, input_png = b64url_decode(body["code"]), b64url_decode(body["input"])
    assert "=" not in body["input"]  # base64url without padding, like the code
    assert np.array_equal(pixels(input_png), digit)  # 28×28 grayscale: what preprocessing made
    assert [code] == compressor.compress(digit[None])  # and the code was made from it
    assert input_png == png_bytes(digit)  # the receiver's PNG encoding: an honest size to compare with

    plain = http.post(f"{sender.url}/encode", content=image, headers=PNG).json()
    assert "input" not in plain and plain["code"] == body["code"]  # opt-in only, same code
    raw = http.post(f"{sender.url}/encode", params={"input": "true"}, content=image, headers={**PNG, **OCTET})
    assert raw.headers["content-type"] == "application/octet-stream" and raw.content == code
    spec = http.get(f"{sender.url}/openapi.json").json()
    (flag,) = [p for p in spec["paths"]["/encode"]["post"]["parameters"] if p["name"] == "input"]
    assert flag["schema"]["type"] == "boolean" and not flag.get("required")
    assert "input" in spec["components"]["schemas"]["EncodeResponse"]["properties"]


def test_encode_accepts_one_multipart_file(
    http: httpx.Client, sender: Service, digit_pngs: list[bytes]
) -> None:
    response = http.post(
        f"{sender.url}/encode", files={"file": ("digit.png", digit_pngs[1], "image/png")}, headers=OCTET
    )
    assert response.status_code == 200, response.text
    assert response.content == encode(http, sender, digit_pngs[1])


def test_encode_batch_keeps_upload_order(
    http: httpx.Client, sender: Service, digit_pngs: list[bytes]
) -> None:
    files = [("files", (f"d{i}.png", png, "image/png")) for i, png in enumerate(digit_pngs)]
    response = http.post(f"{sender.url}/encode/batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == response.headers["x-latentwire-model"]
    codes = [b64url_decode(item["code"]) for item in body["codes"]]
    assert [item["bytes"] for item in body["codes"]] == [len(c) for c in codes]
    assert codes == [encode(http, sender, png) for png in digit_pngs]
    assert len(set(codes)) == len(codes)  # different digits, different codes: the order means something


# --------------------------------------------------------------------------- decoding


def test_decode_raw_and_json_give_the_same_28x28_grayscale_png(
    http: httpx.Client,
    sender: Service,
    receiver: Service,
    digit_pngs: list[bytes],
    decompressor: Decompressor,
) -> None:
    code = encode(http, sender, digit_pngs[0])
    raw = decode(http, receiver, code)
    as_json = http.post(f"{receiver.url}/decode", json={"code": base64.urlsafe_b64encode(code).decode()})
    assert as_json.status_code == 200, as_json.text  # padded base64url is accepted too
    assert as_json.content == raw
    image = pixels(raw)
    assert image.shape == (28, 28)
    assert np.array_equal(image, decompressor.decompress([code])[0])


def test_decode_scale_is_nearest_neighbour(
    http: httpx.Client, sender: Service, receiver: Service, digit_pngs: list[bytes]
) -> None:
    code = encode(http, sender, digit_pngs[2])
    small = pixels(decode(http, receiver, code))
    big = pixels(decode(http, receiver, code, scale=3))
    assert big.shape == (84, 84)
    blocks = big.reshape(28, 3, 28, 3)
    assert (blocks == small[:, None, :, None]).all()  # every 3×3 block is one 1× pixel


def test_decode_batch_matches_single_decodes(
    http: httpx.Client, sender: Service, receiver: Service, digit_pngs: list[bytes]
) -> None:
    codes = [encode(http, sender, png) for png in digit_pngs]
    payload = {"codes": [base64.urlsafe_b64encode(c).decode().rstrip("=") for c in codes]}
    response = http.post(f"{receiver.url}/decode/batch", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    model_id = http.get(f"{receiver.url}/v1/model").json()["model_id"]
    assert body["model_ids"] == [model_id] * len(codes)
    assert [base64.b64decode(p) for p in body["images"]] == [decode(http, receiver, c) for c in codes]


def test_batch_container_round_trip(
    http: httpx.Client, sender: Service, receiver: Service, digit_pngs: list[bytes]
) -> None:
    files = [("files", (f"d{i}.png", png, "image/png")) for i, png in enumerate(digit_pngs)]
    encoded = http.post(f"{sender.url}/encode/batch", files=files, headers=OCTET)
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["content-type"] == bitstream.BATCH_MEDIA_TYPE
    assert encoded.content.startswith(b"LB")
    codes = [encode(http, sender, png) for png in digit_pngs]

    decoded = http.post(
        f"{receiver.url}/decode/batch",
        params={"scale": 2},
        content=encoded.content,
        headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE},
    )
    assert decoded.status_code == 200, decoded.text
    pngs = [base64.b64decode(p) for p in decoded.json()["images"]]
    assert pngs == [decode(http, receiver, c, scale=2) for c in codes]  # the same images, in order
    assert {pixels(p).shape for p in pngs} == {(56, 56)}


# --------------------------------------------------------------------------- metadata


def test_health_readiness_and_model_on_both(http: httpx.Client, sender: Service, receiver: Service) -> None:
    infos = {}
    for service, half in ((sender, "encoder"), (receiver, "decoder")):
        assert http.get(f"{service.url}/healthz").json() == {"status": "ok"}
        ready = http.get(f"{service.url}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        info = http.get(f"{service.url}/v1/model").json()
        assert info["half"] == half
        assert info["code_format_version"] == bitstream.FORMAT_V1 == 1
        assert info["model_id"] == ready.json()["model_id"]
        infos[half] = info
    assert infos["encoder"]["model_id"] == infos["decoder"]["model_id"]
    assert infos["encoder"]["levels"] == infos["decoder"]["levels"]  # one checkpoint, both halves


def test_docs_and_openapi(http: httpx.Client, sender: Service, receiver: Service) -> None:
    for service, path in ((sender, "/encode"), (receiver, "/decode")):
        assert http.get(f"{service.url}/docs").status_code == 200
        spec = http.get(f"{service.url}/openapi.json")
        assert spec.status_code == 200
        assert path in spec.json()["paths"]


# --------------------------------------------------------------------------- refusals


def test_services_refuse_to_start_on_the_other_half(encoder_only_dir: Path, decoder_only_dir: Path) -> None:
    """A sender given only the decoder (a directory, or the file itself) exits at once, and vice versa."""
    cases = [
        ("sender", "--encoder", decoder_only_dir, "no encoder checkpoint"),
        ("sender", "--encoder", decoder_only_dir / DECODER_FILE, "is the decoder half"),
        ("receiver", "--decoder", encoder_only_dir / ENCODER_FILE, "is the encoder half"),
    ]
    processes = [  # side by side: each imports torch
        subprocess.Popen(
            [*service_command(name), "--host", "127.0.0.1", "--port", str(free_port()), flag, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=service_env(),
        )
        for name, flag, path, _ in cases
    ]
    for process, (name, _, path, message) in zip(processes, cases, strict=True):
        try:
            output, _ = process.communicate(timeout=READY_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"latentwire-{name} given {path} did not exit: it started serving")
        text = output.decode(errors="replace")
        assert process.returncode != 0, text
        assert message in text, text
        assert "cannot load the" in text and "Traceback" not in text, text


def test_code_from_another_model_is_409(
    http: httpx.Client, receiver: Service, other_checkpoint: Path, compressor: Compressor
) -> None:
    other = Compressor.from_checkpoint(other_checkpoint)
    assert other.model_id != compressor.model_id
    (code,) = other.compress(np.zeros((28, 28), np.uint8))
    response = http.post(
        f"{receiver.url}/decode", content=code, headers={"Content-Type": "application/octet-stream"}
    )
    assert_error(response, 409, "foreign_model")
    assert other.model_id in response.json()["detail"]


def test_keeps_serving_after_errors(
    http: httpx.Client, sender: Service, receiver: Service, digit_pngs: list[bytes]
) -> None:
    assert_error(http.post(f"{sender.url}/encode", content=b"\x89PNG garbage", headers=PNG), 422, "bad_image")
    assert_error(http.post(f"{sender.url}/encode", content=b"", headers=PNG), 400, "bad_request")
    assert_error(
        http.post(
            f"{receiver.url}/decode",
            content=b"\x20garbage",
            headers={"Content-Type": "application/octet-stream"},
        ),
        422,
        "bad_code",
    )
    assert_error(
        http.post(f"{receiver.url}/decode", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    code = encode(http, sender, digit_pngs[0])
    assert pixels(decode(http, receiver, code)).shape == (28, 28)
    assert sender.process.poll() is None and receiver.process.poll() is None


def test_body_over_the_limit_streamed_does_not_hang(http: httpx.Client, sender: Service) -> None:
    """A chunked body with no Content-Length, over the sender's 10 MiB default, is cut off with 413."""
    chunk = b"\0" * (1 << 20)

    def body() -> Iterator[bytes]:
        for _ in range(11):
            yield chunk

    try:
        response = http.post(f"{sender.url}/encode", content=body(), headers=PNG, timeout=20.0)
    except httpx.TimeoutException:
        pytest.fail("the sender neither answered nor closed the connection")
    except httpx.TransportError:
        pass  # the server may close the connection while the client still writes: refused, not hung
    else:
        assert_error(response, 413, "too_large")
    assert http.get(f"{sender.url}/healthz").status_code == 200


def test_parallel_requests(
    http: httpx.Client, sender: Service, receiver: Service, digit_pngs: list[bytes]
) -> None:
    codes = [encode(http, sender, png) for png in digit_pngs]
    expected_pngs = [decode(http, receiver, c) for c in codes]
    jobs = [("encode", i % len(digit_pngs)) for i in range(10)] + [
        ("decode", i % len(codes)) for i in range(10)
    ]

    def run(job: tuple[str, int]) -> bool:
        kind, i = job
        with httpx.Client(timeout=60.0) as client:
            if kind == "encode":
                return encode(client, sender, digit_pngs[i]) == codes[i]
            return decode(client, receiver, codes[i]) == expected_pngs[i]

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        assert all(pool.map(run, jobs))
