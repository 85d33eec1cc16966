"""The Python clients: against the real sender and receiver processes (the tiny v1 model), and —
for what a live service cannot be made to do on cue (drop a connection, answer 503) — through an
``httpx.MockTransport`` given to the client's ``transport=`` parameter.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from PIL import Image

from latentwire.codec import Compressor
from latentwire.preprocess import load_digit
from latentwire_client import AsyncLatentwireClient, LatentwireClient, RetryPolicy
from latentwire_client.client import ServiceConnectionError, ServiceError, retry_after_seconds
from tests.service.conftest import Service, free_port

Step = httpx.Response | Exception
ERROR_BODY = {"error": "bad_image", "detail": "not an image", "hint": "send a PNG"}


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def scripted(steps: list[Step]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that plays ``steps`` in order (raising the exceptions), repeating the last one."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handle), seen


def mock_client(
    steps: list[Step], monkeypatch: pytest.MonkeyPatch, retries: int = 2
) -> tuple[LatentwireClient, list[httpx.Request], list[float]]:
    """A sync client on a scripted transport; its waits between tries are recorded, not slept."""
    transport, seen = scripted(steps)
    client = LatentwireClient(
        sender_url="http://sender", receiver_url="http://receiver", retries=retries, transport=transport
    )
    sleeps: list[float] = []
    monkeypatch.setattr(client, "_sleep", sleeps.append)
    return client, seen, sleeps


def ok(content: bytes = b"CODE") -> httpx.Response:
    return httpx.Response(200, content=content)


def refused() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


# --------------------------------------------------------------------------- real services


def test_encode_and_decode_against_the_services(
    sender: Service, receiver: Service, digit_pngs: list[bytes], compressor: Compressor
) -> None:
    with LatentwireClient(sender_url=sender.url, receiver_url=receiver.url) as client:
        code = client.encode(digit_pngs[0])
        assert [code] == compressor.compress(load_digit(digit_pngs[0]))
        codes = client.encode_batch(digit_pngs[:3])
        assert codes == [compressor.compress(load_digit(png))[0] for png in digit_pngs[:3]]
        assert png_size(client.decode(code)) == (28, 28)
        assert png_size(client.decode(code, scale=3)) == (84, 84)
        assert [png_size(png) for png in client.decode_batch(codes, scale=2)] == [(56, 56)] * 3
        assert client.model("sender")["half"] == "encoder" and client.model("receiver")["half"] == "decoder"
        assert client.health("receiver") == {"status": "ok"}
        assert client.ready("sender") is True


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        (lambda c, png: c.decode(b"\xe0not a code"), 422, "unsupported_version"),
        (lambda c, png: c.decode(b"\x20\x00"), 422, "bad_code"),
        (lambda c, png: c.encode(png, quality=9), 400, "bad_request"),
        (lambda c, png: c.encode(png, preprocess=False, denoise=True), 400, "bad_request"),
        (lambda c, png: c.encode(b"not an image"), 422, "bad_image"),
        (lambda c, png: c.decode_batch([b"\xe0x"], scale=99), 400, "bad_request"),
        (lambda c, png: c.decode(b"\xe0x", scale=0), 422, "bad_request"),
    ],
)
def test_a_refusal_is_a_service_error_with_the_error_body(
    sender: Service,
    receiver: Service,
    digit_pngs: list[bytes],
    call: Callable[[LatentwireClient, bytes], object],
    status: int,
    error: str,
) -> None:
    client = LatentwireClient(sender_url=sender.url, receiver_url=receiver.url)
    with client, pytest.raises(ServiceError) as caught:
        call(client, digit_pngs[0])
    exc = caught.value
    assert not isinstance(exc, ServiceConnectionError)
    assert (exc.status, exc.error, exc.attempts) == (status, error, 1), exc
    assert exc.detail and exc.hint
    assert str(exc).startswith(f"{status} {error}: {exc.detail}")


def test_a_route_the_service_lacks_is_a_service_error(sender: Service, digit_pngs: list[bytes]) -> None:
    """The sender has no /decode: its 404 comes back in the error shape, as a ServiceError."""
    with (
        LatentwireClient(sender_url=sender.url, receiver_url=sender.url) as client,
        pytest.raises(ServiceError) as caught,
    ):
        client.decode(b"code")
    assert caught.value.status in (404, 405) and caught.value.error == "http_error"


def test_a_dead_port_is_a_connection_error(digit_pngs: list[bytes]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with LatentwireClient(sender_url=dead, receiver_url=dead, retries=0) as client:
        started = time.monotonic()
        for call in (lambda: client.encode(digit_pngs[0]), lambda: client.model("receiver")):
            with pytest.raises(ServiceConnectionError) as caught:
                call()
            exc = caught.value
            assert (exc.status, exc.error, exc.attempts) == (0, "unreachable", 1)
            assert dead in exc.detail and "LATENTWIRE_" in exc.hint
            assert isinstance(exc.__cause__, httpx.ConnectError)
        assert time.monotonic() - started < 5


def test_a_dead_port_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = LatentwireClient(sender_url=dead, receiver_url=dead, retry=RetryPolicy(retries=2, backoff=0.01))
    sleeps: list[float] = []
    monkeypatch.setattr(client, "_sleep", sleeps.append)
    with client, pytest.raises(ServiceConnectionError) as caught:
        client.health()
    assert caught.value.attempts == 3 and "(3 attempts)" in caught.value.detail
    assert len(sleeps) == 2 and 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


@pytest.mark.anyio
async def test_the_async_client_against_the_services(
    sender: Service, receiver: Service, digit_pngs: list[bytes], compressor: Compressor
) -> None:
    async with AsyncLatentwireClient(sender_url=sender.url, receiver_url=receiver.url) as client:
        code = await client.encode(digit_pngs[1])
        assert [code] == compressor.compress(load_digit(digit_pngs[1]))
        assert await client.encode_batch(digit_pngs[1:3]) == [
            compressor.compress(load_digit(png))[0] for png in digit_pngs[1:3]
        ]
        assert png_size(await client.decode(code, scale=2)) == (56, 56)
        assert [png_size(p) for p in await client.decode_batch([code, code], scale=4)] == [(112, 112)] * 2
        assert (await client.model())["default_quality"] is not None
        assert await client.ready("receiver") is True
        with pytest.raises(ServiceError) as caught:
            await client.decode(b"\xe0not a code")
        assert (caught.value.status, caught.value.error) == (422, "unsupported_version")
    dead = f"http://127.0.0.1:{free_port()}"
    async with AsyncLatentwireClient(sender_url=dead, retries=0) as client:
        with pytest.raises(ServiceConnectionError) as unreachable:
            await client.model()
        assert unreachable.value.error == "unreachable"


# --------------------------------------------------------------------------- requests


def test_options_become_query_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, _ = mock_client([ok()], monkeypatch)
    with client:
        client.encode(b"img")
        client.encode(b"img", quality=2, denoise=True, preprocess=False)
        client.decode(b"code")
        client.decode(b"code", scale=4)
    assert [str(r.url) for r in seen] == [
        "http://sender/encode",
        "http://sender/encode?quality=2&denoise=true&preprocess=false",
        "http://receiver/decode",
        "http://receiver/decode?scale=4",
    ]
    assert seen[0].headers["accept"] == "application/octet-stream"
    assert seen[3].content == b"code"


def test_batch_options_become_query_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, _ = mock_client(
        [httpx.Response(200, json={"codes": [{"code": "QUJD", "bytes": 3}]})], monkeypatch
    )
    with client:
        assert client.encode_batch([b"img"], quality=0, preprocess=False) == [b"ABC"]
    assert str(seen[0].url) == "http://sender/encode/batch?quality=0&preprocess=false"


def test_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTWIRE_SENDER_URL", "http://s.example:1/")
    monkeypatch.setenv("LATENTWIRE_RECEIVER_URL", "")
    with LatentwireClient() as client:
        assert (client.sender_url, client.receiver_url) == ("http://s.example:1", "http://127.0.0.1:8002")
        with pytest.raises(ValueError, match="sender"):
            client.model("nobody")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "failure",
    [
        refused(),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_are_retried(failure: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, sleeps = mock_client([failure, failure, ok(b"PNG")], monkeypatch)
    with client:
        assert client.decode(b"code", scale=2) == b"PNG"  # a POST: idempotent, so retried
    assert len(seen) == 3 and all(r.content == b"code" for r in seen)
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # the default backoff, jittered


def test_retries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, sleeps = mock_client([refused()], monkeypatch, retries=3)
    with client, pytest.raises(ServiceConnectionError) as caught:
        client.model()
    assert len(seen) == 4 and len(sleeps) == 3 and caught.value.attempts == 4
    assert (caught.value.status, caught.value.error) == (0, "unreachable")


def test_retries_zero_disables_them(monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, sleeps = mock_client([refused(), ok()], monkeypatch, retries=0)
    with client, pytest.raises(ServiceConnectionError):
        client.encode(b"img")
    assert len(seen) == 1 and sleeps == []


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(retries=10, backoff=1.0, max_backoff=3.0)
    assert all(1.5 <= policy.jitter(n) <= 3.0 for n in range(3, 11))
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


@pytest.mark.parametrize("status", [400, 404, 409, 413, 415, 422, 429, 500, 502])
def test_error_statuses_are_not_retried(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, sleeps = mock_client(
        [httpx.Response(status, json=ERROR_BODY, headers={"Retry-After": "1"}), ok()], monkeypatch
    )
    with client, pytest.raises(ServiceError) as caught:
        client.encode(b"img")
    assert len(seen) == 1 and sleeps == []
    exc = caught.value
    assert (exc.status, exc.error, exc.detail, exc.hint) == (
        status,
        "bad_image",
        "not an image",
        "send a PNG",
    )


def test_503_with_retry_after_is_retried_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = httpx.Response(503, json={**ERROR_BODY, "error": "overloaded"}, headers={"Retry-After": "2"})
    client, seen, sleeps = mock_client([busy, ok()], monkeypatch)
    with client:
        assert client.encode(b"img") == b"CODE"
    assert len(seen) == 2 and 2.25 <= sleeps[0] <= 2.5  # Retry-After, plus the jittered backoff


@pytest.mark.parametrize("retry_after", [None, "60", "soon"])
def test_503_is_not_retried_without_a_usable_retry_after(
    retry_after: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    busy = httpx.Response(503, json={**ERROR_BODY, "error": "overloaded"}, headers=headers)
    client, seen, sleeps = mock_client([busy, ok()], monkeypatch)  # 60 s: over max_retry_after
    with client, pytest.raises(ServiceError) as caught:
        client.encode(b"img")
    assert (
        len(seen) == 1 and sleeps == [] and (caught.value.status, caught.value.error) == (503, "overloaded")
    )


def test_503_retries_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = httpx.Response(503, json={**ERROR_BODY, "error": "overloaded"}, headers={"Retry-After": "0"})
    client, seen, _ = mock_client([busy], monkeypatch, retries=1)
    with client, pytest.raises(ServiceError) as caught:
        client.decode_batch([b"code"])
    assert len(seen) == 2 and (caught.value.status, caught.value.attempts) == (503, 2)


def test_retry_after_as_a_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds("-1") is None and retry_after_seconds(None) is None


# --------------------------------------------------------------------------- other failures


def test_a_read_timeout_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    client, seen, _ = mock_client([httpx.ReadTimeout("timed out"), ok()], monkeypatch)
    with client, pytest.raises(ServiceConnectionError) as caught:
        client.encode(b"img")
    assert len(seen) == 1 and (caught.value.status, caught.value.error) == (0, "timeout")


def test_an_error_answer_without_the_json_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, _ = mock_client([httpx.Response(502, text="<html>Bad Gateway</html>")], monkeypatch)
    with client, pytest.raises(ServiceError) as caught:
        client.model()
    exc = caught.value
    assert (exc.status, exc.error, exc.detail) == (502, "http_error", "<html>Bad Gateway</html>")
    assert "http://sender/v1/model" in exc.hint


def test_a_success_the_client_cannot_read_is_bad_response(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, _ = mock_client([httpx.Response(200, text="not json")], monkeypatch)
    with client, pytest.raises(ServiceError) as caught:
        client.encode_batch([b"img"])
    assert (caught.value.status, caught.value.error) == (200, "bad_response")


def test_a_url_without_a_scheme_is_bad_url() -> None:
    with (
        LatentwireClient(sender_url="localhost:8001", retries=0) as client,
        pytest.raises(ServiceConnectionError) as caught,
    ):
        client.model()
    assert caught.value.error == "bad_url"


def test_ready_is_false_while_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, _ = mock_client([httpx.Response(503, json={"status": "loading"})], monkeypatch)
    with client:
        assert client.ready() is False


@pytest.mark.anyio
async def test_the_async_client_retries_and_waits_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = scripted([refused(), httpx.Response(200, json={"status": "ok"})])
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async with AsyncLatentwireClient(sender_url="http://sender", transport=transport) as client:
        monkeypatch.setattr(client, "_sleep", record)
        assert await client.health() == {"status": "ok"}
    assert len(seen) == 2 and len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5


@pytest.mark.anyio
async def test_the_async_client_does_not_retry_a_4xx() -> None:
    transport, seen = scripted([httpx.Response(400, json=ERROR_BODY), ok()])
    async with AsyncLatentwireClient(sender_url="http://sender", transport=transport) as client:
        with pytest.raises(ServiceError) as caught:
            await client.encode(b"img", quality=1, denoise=True)
    assert len(seen) == 1 and str(seen[0].url) == "http://sender/encode?quality=1&denoise=true"
    assert (caught.value.status, caught.value.error) == (400, "bad_image")


def test_the_api_key_goes_with_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return httpx.Response(200, json={"status": "ok"})

    with LatentwireClient(api_key="k1", transport=httpx.MockTransport(answer)) as client:
        client.health()
    monkeypatch.setenv("LATENTWIRE_API_KEY", "k2")
    with LatentwireClient(transport=httpx.MockTransport(answer)) as client:
        client.health("receiver")
    monkeypatch.delenv("LATENTWIRE_API_KEY")
    with LatentwireClient(transport=httpx.MockTransport(answer)) as client:
        client.health()
    assert seen == ["k1", "k2", None]
