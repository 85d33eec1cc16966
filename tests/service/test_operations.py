"""Operations: /metrics, request ids, one log line per request, API keys and CORS.

In process (``create_sender`` / ``create_receiver`` with ``serving``, as in test_errors.py), and
once against real uvicorn processes (settings from the environment, logs from their output).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pydantic
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

import latentwire_http.auth as auth
from latentwire.codec import Compressor
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import png_bytes
from latentwire_http.auth import KeyRing, is_loopback
from latentwire_http.cors import JsonCORSMiddleware
from latentwire_http.metrics import observe_code_sizes
from latentwire_http.observability import JsonFormatter, sane_request_id
from latentwire_receiver.main import create_app as create_receiver
from latentwire_receiver.settings import ReceiverSettings
from latentwire_sender.main import create_app as create_sender
from latentwire_sender.settings import SenderSettings
from tests.service.conftest import assert_error, start_services
from tests.service.test_errors import serving

pytestmark = pytest.mark.anyio

PNG = {"Content-Type": "image/png"}
OCTET = {"Content-Type": "application/octet-stream"}
KEYS = "k1-secret,k2-secret"
HEX32 = re.compile(r"[0-9a-f]{32}")
ACCESS = "latentwire.access"


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    return png_bytes(image)


@pytest.fixture(scope="module")
def code(compressor: Compressor) -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    return compressor.compress(image)[0]


def sender(ladder: EncoderLadder, **settings: Any) -> FastAPI:
    return create_sender(SenderSettings(**settings), ladder=ladder)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exposition parsed (it must parse): sample name → [(labels, value)]."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (0 when there is none)."""
    matching = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(matching) <= 1, (name, labels, matching)
    return matching[0] if matching else 0.0


async def scrape(client: httpx.AsyncClient, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return samples(response.text)


# --------------------------------------------------------------------------- metrics


async def test_metrics_parse_and_move(encoder_ladder: EncoderLadder, digit_png: bytes) -> None:
    app = sender(encoder_ladder)
    async with serving(app) as client:
        before = await scrape(client)
        assert value(before, "latentwire_http_requests_total", route="/encode") == 0
        for _ in range(2):
            assert (await client.post("/encode", content=digit_png, headers=PNG)).status_code == 200
        assert (await client.post("/encode", content=b"not an image", headers=PNG)).status_code == 422
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/no/such/route/12345")).status_code == 404
        assert (await client.get("/encode")).status_code == 405
        after = await scrape(client)

    requests = "latentwire_http_requests_total"
    assert value(after, requests, route="/encode", method="POST", status="200") == 2
    assert value(after, requests, route="/encode", method="POST", status="422") == 1
    assert value(after, requests, route="/encode", method="GET", status="405") == 1
    assert value(after, requests, route="/healthz", method="GET", status="200") == 1
    assert value(after, requests, route="/metrics", method="GET", status="200") == 1  # the first scrape
    # the raw path never becomes a label: one bounded label for every unknown route
    assert value(after, requests, route="unmatched", status="404") == 1
    routes = {labels["route"] for labels, _ in after[requests]}
    assert routes == {"/encode", "/healthz", "/metrics", "unmatched"}
    assert value(after, "latentwire_http_request_duration_seconds_count", route="/encode") == 4
    assert value(after, "latentwire_batch_size_items_count") == 2  # the bad image never reached the network
    assert value(after, "latentwire_batch_size_items_sum") == 2
    assert value(after, "latentwire_batch_duration_seconds_count") == 2
    assert value(after, "latentwire_queue_pending_items") == 0
    assert value(after, "latentwire_queue_capacity_items") == 2048
    assert value(after, "latentwire_service_info", service="sender") == 1
    (model,) = encoder_ladder.levels()
    assert (
        value(
            after,
            "latentwire_model_info",
            level=str(model.level),
            denoise="false",
            model_id=model.model_id,
        )
        == 1
    )


async def test_overload_is_counted(encoder_ladder: EncoderLadder, digit_png: bytes) -> None:
    app = sender(encoder_ladder, max_pending=256, max_batch=256)
    async with serving(app) as client:
        with app.state.batcher.admit(256):  # the queue is full
            found = await scrape(client)
            assert value(found, "latentwire_queue_pending_items") == 256
            refused = await client.post("/encode", content=digit_png, headers=PNG)
            assert_error(refused, 503, "overloaded")
        assert (await client.get("/readyz")).status_code == 200
        found = await scrape(client)
    assert value(found, "latentwire_http_rejected_total", route="/encode") == 1
    assert value(found, "latentwire_http_requests_total", route="/encode", status="503") == 1
    assert value(found, "latentwire_http_rejected_total", route="/readyz") == 0
    assert value(found, "latentwire_queue_pending_items") == 0


async def test_code_sizes_per_level(encoder_ladder: EncoderLadder) -> None:
    app = sender(encoder_ladder)
    request: Any = SimpleNamespace(app=app)  # what observe_code_sizes reads of a request
    observe_code_sizes(request, 3, [9, 11, 13])
    observe_code_sizes(request, 3, [12], denoise=True)
    observe_code_sizes(SimpleNamespace(app=FastAPI()), 3, [10])  # type: ignore[arg-type]  # no metrics: ignored
    async with serving(app) as client:
        found = await scrape(client)
    assert value(found, "latentwire_code_bytes_count", level="3", denoise="false") == 3
    assert value(found, "latentwire_code_bytes_sum", level="3", denoise="false") == 33
    assert value(found, "latentwire_code_bytes_bucket", level="3", denoise="false", le="10.0") == 1
    assert value(found, "latentwire_code_bytes_count", level="3", denoise="true") == 1


async def test_receiver_metrics_and_apps_do_not_share_a_registry(
    decoder_ladder: DecoderLadder, encoder_ladder: EncoderLadder, code: bytes
) -> None:
    receiver = create_receiver(ReceiverSettings(), ladder=decoder_ladder)
    other = sender(encoder_ladder)
    async with serving(receiver) as client, serving(other) as other_client:
        assert (await client.post("/decode", content=code, headers=OCTET)).status_code == 200
        found = await scrape(client)
        found_other = await scrape(other_client)
    assert value(found, "latentwire_http_requests_total", route="/decode", status="200") == 1
    assert value(found, "latentwire_service_info", service="receiver") == 1
    assert value(found, "latentwire_batch_size_items_count") == 1
    assert value(found_other, "latentwire_http_requests_total", route="/decode") == 0


# --------------------------------------------------------------------------- request ids


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("abc-123_x.y", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ("semi;colon", False),
        ("ünïcode".encode(), False),
        ("", False),
        (None, False),
    ],
)
async def test_request_id(encoder_ladder: EncoderLadder, sent: str | bytes | None, echoed: bool) -> None:
    app = sender(encoder_ladder)
    headers: dict[str, Any] = {} if sent is None else {"X-Request-ID": sent}
    async with serving(app) as client:
        for path in ("/healthz", "/no/such/route"):
            response = await client.get(path, headers=headers)
            ids = response.headers.get_list("x-request-id")
            assert len(ids) == 1, response.headers
            if echoed:
                assert ids[0] == sent
            else:
                assert HEX32.fullmatch(ids[0]), ids
    assert sane_request_id(b"x") and not sane_request_id(b"")


async def test_request_ids_differ(encoder_ladder: EncoderLadder) -> None:
    async with serving(sender(encoder_ladder)) as client:
        ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# --------------------------------------------------------------------------- logs


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS]


async def test_one_text_line_per_request(
    encoder_ladder: EncoderLadder, digit_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    app = sender(encoder_ladder)
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with serving(app) as client:
        ok = await client.post("/encode", content=digit_png, headers={**PNG, "X-Request-ID": "req-1"})
        bad = await client.post("/encode", content=b"junk", headers=PNG)
        await client.get("/healthz")
    records = access_records(caplog)
    assert len(records) == 3
    first, second, third = (r.getMessage() for r in records)
    quality = ok.headers["x-latentwire-quality"]
    assert first.startswith("request_id=req-1 method=POST route=/encode status=200 latency_ms=")
    assert f"bytes_in={len(digit_png)} bytes_out={len(ok.content)} quality={quality} " in first
    assert f"request_id={bad.headers['x-request-id']} method=POST route=/encode status=422" in second
    assert "bytes_in=4 " in second and "quality=-" in second
    assert "route=/healthz status=200" in third
    assert all("\n" not in r.getMessage() for r in records)


async def test_one_json_line_per_request(
    encoder_ladder: EncoderLadder, digit_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    app = sender(encoder_ladder, log_format="JSON")
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with serving(app) as client:
        ok = await client.post("/encode", content=digit_png, headers={**PNG, "X-Request-ID": "req-2"})
        await client.get("/nowhere")
    lines = [JsonFormatter().format(r) for r in access_records(caplog)]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    encode, missing = (json.loads(line) for line in lines)
    assert encode["logger"] == ACCESS and encode["level"] == "INFO"
    assert {k: encode[k] for k in ("request_id", "method", "route", "status", "bytes_in", "bytes_out")} == {
        "request_id": "req-2",
        "method": "POST",
        "route": "/encode",
        "status": 200,
        "bytes_in": len(digit_png),
        "bytes_out": len(ok.content),
    }
    assert encode["quality"] == int(ok.headers["x-latentwire-quality"])
    assert isinstance(encode["latency_ms"], float) and encode["latency_ms"] > 0
    assert missing["route"] == "unmatched" and missing["status"] == 404 and "quality" not in missing
    assert "/nowhere" not in lines[1]  # the raw path is not logged


def test_json_formatter_on_any_record() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, "f", 1, "a %s", ("b",), None)
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "a b" and line["level"] == "ERROR" and "ValueError: boom" in line["exc"]


async def test_access_log_can_be_off(encoder_ladder: EncoderLadder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with serving(sender(encoder_ladder, access_log=False)) as client:
        response = await client.get("/healthz")
    assert access_records(caplog) == [] and "x-request-id" in response.headers


# --------------------------------------------------------------------------- API keys


async def test_keys_required(
    encoder_ladder: EncoderLadder, digit_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    app = sender(encoder_ladder, api_keys=KEYS)
    caplog.set_level(logging.DEBUG)
    async with serving(app) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"X-API-Key": "k1"},
            {"Authorization": "k1-secret"},
        ):
            refused = await client.post("/encode", content=digit_png, headers={**PNG, **headers})
            body = assert_error(refused, 401, "unauthorized")
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "x-request-id" in refused.headers
            assert "secret" not in json.dumps(body)
        for headers in (
            {"Authorization": "Bearer k1-secret"},
            {"Authorization": "bearer  k2-secret "},
            {"X-API-Key": "k2-secret"},
        ):
            assert (
                await client.post("/encode", content=digit_png, headers={**PNG, **headers})
            ).status_code == 200
        # unknown routes and the docs are closed too (no map of the service for strangers)
        assert_error(await client.get("/no/such/route"), 401, "unauthorized")
        assert_error(await client.get("/v1/model"), 401, "unauthorized")
        assert (await client.get("/v1/model", headers={"X-API-Key": "k1-secret"})).status_code == 200
        # health and (by default) metrics stay open
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        found = await scrape(client)
    assert value(found, "latentwire_http_requests_total", route="/encode", status="401") == 4
    assert value(found, "latentwire_http_requests_total", route="/v1/model", status="401") == 1
    assert value(found, "latentwire_http_requests_total", route="/encode", status="200") == 3
    assert "secret" not in caplog.text  # keys are never logged


async def test_metrics_closed_by_setting(decoder_ladder: DecoderLadder) -> None:
    app = create_receiver(
        ReceiverSettings(api_keys=SecretStr("r1"), metrics_open=False), ladder=decoder_ladder
    )
    async with serving(app) as client:
        assert_error(await client.get("/metrics"), 401, "unauthorized")
        await scrape(client, Authorization="Bearer r1")
        assert (await client.get("/healthz")).status_code == 200


async def test_keys_off_by_default(encoder_ladder: EncoderLadder) -> None:
    async with serving(sender(encoder_ladder)) as client:
        assert (await client.get("/v1/model")).status_code == 200


async def test_every_key_is_compared(encoder_ladder: EncoderLadder, monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest against every configured key, also when the first one matches."""
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    app = sender(encoder_ladder, api_keys="first,second,third")
    async with serving(app) as client:
        for key, status in (
            ("first", 200),
            ("third", 200),
            ("fourth", 401),
            ("a-much-longer-wrong-key", 401),
        ):
            calls.clear()
            assert (await client.get("/v1/model", headers={"X-API-Key": key})).status_code == status
            assert len(calls) == 3, key  # no early exit
            assert {len(a) for a, _ in calls} == {32}  # digests: a key's length does not show either
    ring = KeyRing(["x", "y"])
    assert ring.accepts(b"y") and not ring.accepts(b"z") and len(ring) == 2


def test_key_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# the ops team\nfile-key-1\n\n  file-key-2  \n#file-key-3\nwith#hash\n")
    settings = SenderSettings(api_keys=SecretStr(" a , b,,a "), api_keys_file=key_file)
    assert settings.api_key_values() == ["a", "b", "file-key-1", "file-key-2", "with#hash"]
    assert "file-key" not in repr(settings) and "'a'" not in repr(settings)  # SecretStr
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(pydantic.ValidationError, match="holds no key"):
        SenderSettings(api_keys_file=empty)
    with pytest.raises(pydantic.ValidationError, match="cannot read"):
        SenderSettings(api_keys_file=tmp_path / "missing")
    # the service's own variable first, then the shared one
    monkeypatch.setenv("LATENTWIRE_API_KEYS", "shared")
    monkeypatch.setenv("LATENTWIRE_SENDER_API_KEYS", "mine1,mine2")
    monkeypatch.setenv("LATENTWIRE_RECEIVER_METRICS_OPEN", "false")
    monkeypatch.setenv("LATENTWIRE_LOG_FORMAT", "json")
    assert SenderSettings().api_key_values() == ["mine1", "mine2"]
    assert ReceiverSettings().api_key_values() == ["shared"]
    assert ReceiverSettings().metrics_open is False and SenderSettings().metrics_open is True
    assert SenderSettings().log_format == "json"
    with pytest.raises(pydantic.ValidationError):
        SenderSettings(log_format="yaml")  # type: ignore[arg-type]


BINDINGS = [
    ("0.0.0.0", None, True),
    ("::", None, True),
    ("10.1.2.3", None, True),
    ("0.0.0.0", "k", False),
    ("127.0.0.1", None, False),
    ("::1", None, False),
    ("localhost", None, False),
]


@pytest.mark.parametrize(("host", "keys", "warned"), BINDINGS)
async def test_startup_warning(
    encoder_ladder: EncoderLadder, caplog: pytest.LogCaptureFixture, host: str, keys: str | None, warned: bool
) -> None:
    caplog.set_level(logging.INFO, logger="latentwire.http")
    async with serving(sender(encoder_ladder, host=host, api_keys=keys)):
        pass
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "without API keys" in r.getMessage()
    ]
    assert len(warnings) == int(warned), caplog.text
    assert warnings[0].getMessage().count(host) == 1 if warned else True


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "192.168.1.2", "example.org"]))


# --------------------------------------------------------------------------- CORS

ORIGIN = "http://127.0.0.1:8001"  # the demo page's origin when the sender serves it


def preflight(method: str = "POST", origin: str = ORIGIN, headers: str | None = None) -> dict[str, str]:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    return sent if headers is None else {**sent, "Access-Control-Request-Headers": headers}


async def test_no_cors_by_default(decoder_ladder: DecoderLadder, code: bytes) -> None:
    app = create_receiver(ReceiverSettings(), ladder=decoder_ladder)
    assert not [m for m in app.user_middleware if m.cls is JsonCORSMiddleware]
    async with serving(app) as client:
        answer = await client.post("/decode", content=code, headers={**OCTET, "Origin": ORIGIN})
        assert answer.status_code == 200
        assert not [name for name in answer.headers if name.startswith("access-control-")]
        assert_error(await client.options("/decode", headers=preflight()), 405, "http_error")


async def test_cors_for_the_configured_origins(decoder_ladder: DecoderLadder, code: bytes) -> None:
    settings = ReceiverSettings(cors_origins=f" {ORIGIN}/ ,http://demo.example:8000")
    app = create_receiver(settings, ladder=decoder_ladder)
    async with serving(app) as client:
        allowed = await client.options("/decode", headers=preflight(headers="content-type,x-api-key"))
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert allowed.headers["access-control-allow-methods"] == "GET, POST"
        allowed_headers = set(allowed.headers["access-control-allow-headers"].lower().split(", "))
        assert {"content-type", "x-api-key", "authorization", "x-request-id"} <= allowed_headers
        assert "access-control-allow-credentials" not in allowed.headers

        answer = await client.post("/decode", content=code, headers={**OCTET, "Origin": ORIGIN})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
        exposed = answer.headers["access-control-expose-headers"]
        assert {"X-Request-ID", "X-Latentwire-Model", "Retry-After"} <= set(exposed.split(", "))
        # a refusal is readable by the page too: its JSON detail and hint
        refused = await client.post("/decode", content=code[:-1], headers={**OCTET, "Origin": ORIGIN})
        assert_error(refused, 422, "bad_code")
        assert refused.headers["access-control-allow-origin"] == ORIGIN

        other = await client.post("/decode", content=code, headers={**OCTET, "Origin": "http://evil.example"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
        for headers, what in [
            (preflight(origin="http://evil.example"), "origin"),
            (preflight(method="PUT"), "method"),
            (preflight(headers="x-something-else"), "headers"),
        ]:
            body = assert_error(await client.options("/decode", headers=headers), 400, "bad_request")
            assert f"not allowed: {what}" in body["detail"] and "cors_origins" in body["hint"], body
        found = await scrape(client)
    # a preflight is counted under its route's template
    options = value(found, "latentwire_http_requests_total", route="/decode", method="OPTIONS", status="200")
    assert options == 1


async def test_cors_comes_before_the_keys(encoder_ladder: EncoderLadder, digit_png: bytes) -> None:
    """A browser's preflight carries no key; the 401 it may then get is readable by the page."""
    app = sender(encoder_ladder, api_keys=KEYS, cors_origins=ORIGIN)
    async with serving(app) as client:
        allowed = await client.options("/encode", headers=preflight(headers="x-api-key"))
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
        refused = await client.post("/encode", content=digit_png, headers={**PNG, "Origin": ORIGIN})
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        ok = await client.post(
            "/encode", content=digit_png, headers={**PNG, "Origin": ORIGIN, "X-API-Key": "k1-secret"}
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN


def test_cors_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ReceiverSettings().cors_origin_values() == []
    assert SenderSettings(cors_origins="*").cors_origin_values() == ["*"]
    given = " http://127.0.0.1:8001/ , https://demo.example ,, http://[::1]:9000"
    assert ReceiverSettings(cors_origins=given).cors_origin_values() == [
        "http://127.0.0.1:8001",
        "https://demo.example",
        "http://[::1]:9000",
    ]
    for bad in ("http://127.0.0.1:8001/demo/", "127.0.0.1:8001", "ftp://host", "http://a b"):
        with pytest.raises(pydantic.ValidationError, match="is not an origin"):
            ReceiverSettings(cors_origins=bad)
    # the service's own variable first, then the shared one
    monkeypatch.setenv("LATENTWIRE_CORS_ORIGINS", "http://shared.example")
    monkeypatch.setenv("LATENTWIRE_RECEIVER_CORS_ORIGINS", ORIGIN)
    assert ReceiverSettings().cors_origin_values() == [ORIGIN]
    assert SenderSettings().cors_origin_values() == ["http://shared.example"]


# --------------------------------------------------------------------------- real processes


def test_real_services(
    encoder_only_dir: Path, decoder_only_dir: Path, tmp_path: Path, digit_png: bytes, code: bytes
) -> None:
    """Settings from the environment; logs as the processes write them: JSON (sender), text (receiver)."""
    sender_env = {"LATENTWIRE_SENDER_API_KEYS": "skey-1,skey-2", "LATENTWIRE_SENDER_LOG_FORMAT": "json"}
    receiver_env = {"LATENTWIRE_RECEIVER_METRICS_OPEN": "false", "LATENTWIRE_API_KEYS": "rkey-1"}
    snd, rcv = start_services(
        [
            ("sender", "--encoder", encoder_only_dir, sender_env),
            ("receiver", "--decoder", decoder_only_dir, receiver_env),
        ],
        tmp_path,
    )
    try:
        with httpx.Client(timeout=30.0) as client:
            refused = client.post(
                f"{snd.url}/encode", content=digit_png, headers={**PNG, "X-Request-ID": "r-1"}
            )
            assert_error(refused, 401, "unauthorized")
            assert (
                refused.headers["x-request-id"] == "r-1" and refused.headers["www-authenticate"] == "Bearer"
            )
            ok = client.post(
                f"{snd.url}/encode",
                content=digit_png,
                headers={**PNG, "X-Request-ID": "r-2", "X-API-Key": "skey-2"},
            )
            assert ok.status_code == 200 and ok.headers["x-request-id"] == "r-2"
            found = samples(client.get(f"{snd.url}/metrics").text)
            assert value(found, "latentwire_http_requests_total", route="/encode", status="401") == 1
            assert value(found, "latentwire_http_requests_total", route="/encode", status="200") == 1
            decoded = client.post(
                f"{rcv.url}/decode", content=code, headers={**OCTET, "Authorization": "Bearer rkey-1"}
            )
            assert decoded.status_code == 200 and HEX32.fullmatch(decoded.headers["x-request-id"])
            assert_error(client.get(f"{rcv.url}/metrics"), 401, "unauthorized")
            assert client.get(f"{rcv.url}/metrics", headers={"X-API-Key": "rkey-1"}).status_code == 200
            assert client.get(f"{rcv.url}/healthz").status_code == 200
    finally:
        snd.stop()
        rcv.stop()

    sender_log, receiver_log = snd.log(), rcv.log()
    assert "skey" not in sender_log and "rkey" not in receiver_log  # keys are never logged
    # JSON: every line the sender wrote is one object (uvicorn's too)
    lines = [json.loads(line) for line in sender_log.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == ACCESS and line["route"] == "/encode"]
    assert [(a["request_id"], a["status"]) for a in access] == [("r-1", 401), ("r-2", 200)], sender_log
    assert access[1]["quality"] == int(ok.headers["x-latentwire-quality"])
    assert access[1]["bytes_in"] == len(digit_png) and access[1]["bytes_out"] == len(ok.content)
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    # text: one readable line per request
    decode_lines = [line for line in receiver_log.splitlines() if "route=/decode " in line]
    assert len(decode_lines) == 1, receiver_log
    assert decode_lines[0].startswith("INFO latentwire.access: request_id=")
    assert "status=200 latency_ms=" in decode_lines[0] and f"bytes_in={len(code)} " in decode_lines[0]
    metrics_lines = [line for line in receiver_log.splitlines() if "route=/metrics " in line]
    assert [("status=401" in m, "status=200" in m) for m in metrics_lines] == [(True, False), (False, True)]
