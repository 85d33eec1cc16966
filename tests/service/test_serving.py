"""Serving the real shipped ladder: v6 codes through real uvicorn processes, micro-batching across
concurrent requests (codes and pixels exactly as in process), the batch container over HTTP,
per-request errors inside a shared batch, and bounded admission (503 + Retry-After)."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from latentwire import bitstream
from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import png_bytes
from latentwire_sender.main import create_app as create_sender
from latentwire_sender.settings import SenderSettings
from tests.service.conftest import Service, assert_error, start_services
from tests.service.test_errors import serving

PNG = {"Content-Type": "image/png"}
OCTET = {"Accept": "application/octet-stream"}


@pytest.fixture(scope="module")
def ladders() -> tuple[EncoderLadder, DecoderLadder]:
    return EncoderLadder.load(), DecoderLadder.load()


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:48]


def encode(client: httpx.Client, url: str, digit: np.ndarray, query: str = "") -> bytes:
    response = client.post(f"{url}/encode{query}", content=png_bytes(digit), headers={**PNG, **OCTET})
    assert response.status_code == 200, response.text
    return response.content


def decode(client: httpx.Client, url: str, code: bytes) -> np.ndarray:
    response = client.post(
        f"{url}/decode", content=code, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


@pytest.mark.parametrize(("quality", "denoise"), [(1, False), (3, False), (5, False), (6, False), (3, True)])
def test_each_level_over_http_matches_the_codec_in_process(
    quality: int,
    denoise: bool,
    shipped: tuple[Service, Service],
    ladders: tuple[EncoderLadder, DecoderLadder],
    digits: np.ndarray,
) -> None:
    sender, receiver = shipped
    model = ladders[0].select(quality=quality, denoise=denoise)
    query = f"?quality={quality}&denoise={str(denoise).lower()}"
    with httpx.Client(timeout=30) as client:
        codes = [encode(client, sender.url, digit, query) for digit in digits[:6]]
        header = bitstream.read_header(codes[0])
        assert (header.version, header.level, header.denoise) == (bitstream.LADDER_FORMAT, quality, denoise)
        assert codes == model.compress(digits[:6])  # the same bytes as in process
        pixels = np.stack([decode(client, receiver.url, code) for code in codes])
    assert np.array_equal(pixels, ladders[1].decompress(codes)[0])


def test_concurrent_requests_share_batches_yet_get_exactly_their_own_codes(
    shipped: tuple[Service, Service], ladders: tuple[EncoderLadder, DecoderLadder], digits: np.ndarray
) -> None:
    """48 digits at mixed levels from 16 threads: micro-batched, and still byte-exact."""
    sender, receiver = shipped
    levels = [1 + i % 6 for i in range(len(digits))]
    with (
        httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16)) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        codes = list(
            pool.map(lambda i: encode(client, sender.url, digits[i], f"?quality={levels[i]}"), range(48))
        )
        pixels = list(pool.map(lambda code: decode(client, receiver.url, code), codes))
    for i, code in enumerate(codes):
        assert code == ladders[0].select(quality=levels[i]).compress(digits[i])[0]
    assert np.array_equal(np.stack(pixels), ladders[1].decompress(codes)[0])


def test_the_batch_container_round_trips_over_http(
    shipped: tuple[Service, Service], ladders: tuple[EncoderLadder, DecoderLadder], digits: np.ndarray
) -> None:
    sender, receiver = shipped
    files = [("files", (f"{i}.png", png_bytes(d), "image/png")) for i, d in enumerate(digits)]
    with httpx.Client(timeout=60) as client:
        packed = client.post(
            f"{sender.url}/encode/batch?quality=2",
            files=files,
            headers={"Accept": "application/octet-stream"},
        )
        assert packed.status_code == 200, packed.text
        assert packed.headers["content-type"] == bitstream.BATCH_MEDIA_TYPE
        assert packed.content == ladders[0].select(quality=2).compress_batch(digits)
        unpacked = client.post(
            f"{receiver.url}/decode/batch",
            content=packed.content,
            headers={"Content-Type": bitstream.BATCH_MEDIA_TYPE},
        )
    assert unpacked.status_code == 200, unpacked.text
    body = unpacked.json()
    images = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in body["images"]])
    codes = ladders[0].select(quality=2).compress(digits)
    assert np.array_equal(images, ladders[1].decompress(codes)[0])
    assert set(body["model_ids"]) == {ladders[0].select(quality=2).model_id}


def test_a_bad_request_fails_alone_among_concurrent_good_ones(
    shipped: tuple[Service, Service], digits: np.ndarray
) -> None:
    sender, receiver = shipped
    good = [png_bytes(d) for d in digits[:15]]
    bodies = [*good[:7], b"\x89PNG\r\n\x1a\n not really", *good[7:]]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda b: client.post(f"{sender.url}/encode", content=b, headers=PNG), bodies)
        )
        assert_error(answers[7], 422, "bad_image")
        assert [a.status_code for i, a in enumerate(answers) if i != 7] == [200] * 15
        codes = [base64.urlsafe_b64decode(a.json()["code"] + "==") for i, a in enumerate(answers) if i != 7]
        bad_code = bytearray(codes[0])
        bad_code[-1] ^= 0x5A
        mixed = [*codes[:5], bytes(bad_code), *codes[5:]]
        decoded = list(
            pool.map(
                lambda c: client.post(
                    f"{receiver.url}/decode", content=c, headers={"Content-Type": "application/octet-stream"}
                ),
                mixed,
            )
        )
    assert decoded[5].status_code in (409, 422) and set(decoded[5].json()) == {"error", "detail", "hint"}
    assert [d.status_code for i, d in enumerate(decoded) if i != 5] == [200] * 15


def test_a_full_queue_answers_503_with_retry_after_at_once(tmp_path: Path, digits: np.ndarray) -> None:
    """A real sender admitting one image at a time, flooded by 24 concurrent uploads."""
    env = {
        "LATENTWIRE_SENDER_MAX_PENDING": "1",
        "LATENTWIRE_SENDER_MAX_BATCH": "1",
        "LATENTWIRE_SENDER_BATCH_SIZE": "1",
    }
    (sender,) = start_services([("sender", "--encoder", None, env)], tmp_path)
    try:
        photo = io.BytesIO()
        Image.fromarray(np.kron(255 - digits[0], np.ones((100, 100), np.uint8))).save(photo, format="PNG")
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(24) as pool:
            answers = list(
                pool.map(
                    lambda _: client.post(f"{sender.url}/encode", content=photo.getvalue(), headers=PNG),
                    range(24),
                )
            )
            assert client.get(f"{sender.url}/healthz").status_code == 200
    finally:
        sender.stop()
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert_error(answer, 503, "overloaded")
            assert int(answer.headers["retry-after"]) >= 1


@pytest.mark.anyio
async def test_admission_and_body_budget_refuse_in_process(
    ladders: tuple[EncoderLadder, DecoderLadder], digits: np.ndarray
) -> None:
    app: FastAPI = create_sender(SenderSettings(max_pending=4, max_batch=4), ladder=ladders[0])
    async with serving(app) as client:
        with app.state.batcher.admit(4):  # every slot taken by requests in flight
            response = await client.post("/encode", content=png_bytes(digits[0]), headers=PNG)
            assert_error(response, 503, "overloaded")
            assert response.headers["retry-after"] == "1"
            assert response.headers["connection"] == "close"  # the rest of a refused upload stops
        assert (await client.post("/encode", content=png_bytes(digits[0]), headers=PNG)).status_code == 200
        app.state.body_budget.held = app.state.body_budget.total  # bodies in flight fill the budget
        response = await client.post("/encode", content=png_bytes(digits[0]), headers=PNG)
        assert_error(response, 503, "overloaded")
        app.state.body_budget.held = 0
        assert (await client.get("/healthz")).status_code == 200
    assert json.loads(response.text)["hint"]
