"""Typed Python clients for the sender and the receiver: ``LatentwireClient`` and ``AsyncLatentwireClient``.

>>> with LatentwireClient() as client:                      # URLs from the environment or defaults
...     code = client.encode(open("digit.png", "rb").read(), quality=2)
...     png = client.decode(code, scale=4)

Both clients build their requests and read the answers with the same code (``_Call``, ``_Attempts``);
they differ only in how they send a request and how they wait between attempts.
"""

from __future__ import annotations

import base64
import email.utils
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import anyio
import httpx

__all__ = [
    "DEFAULT_RECEIVER_URL",
    "DEFAULT_SENDER_URL",
    "AsyncLatentwireClient",
    "LatentwireClient",
    "RetryPolicy",
    "ServiceConnectionError",
    "ServiceError",
]

DEFAULT_SENDER_URL = "http://127.0.0.1:8001"
DEFAULT_RECEIVER_URL = "http://127.0.0.1:8002"

Service = Literal["sender", "receiver"]
T = TypeVar("T")


class ServiceError(Exception):
    """A call failed. ``status`` is the HTTP status, or 0 when no HTTP answer came back.

    ``error`` is the service's machine-readable code (``bad_image``, ``overloaded``, … — README,
    "Errors"); ``http_error`` for an error answer without the JSON error shape; ``bad_response``
    for a success answer the client cannot read. ``attempts`` counts the tries made (retries
    included).
    """

    def __init__(self, status: int, error: str, detail: str, hint: str = "", *, attempts: int = 1) -> None:
        prefix = f"{status} " if status else ""
        super().__init__(f"{prefix}{error}: {detail}" + (f" ({hint})" if hint else ""))
        self.status, self.error, self.detail, self.hint = status, error, detail, hint
        self.attempts = attempts


class ServiceConnectionError(ServiceError):
    """No HTTP answer came back (``status`` 0).

    ``error``: ``unreachable`` (the connection was refused or the host not found), ``timeout``
    (connecting, sending or waiting for the answer took longer than the client's ``timeout``),
    ``connection_lost`` (the connection broke, or the peer did not speak HTTP), ``bad_url`` (the
    service URL is not an http:// or https:// URL) or ``transport_error`` (anything else httpx
    reports).
    """


# --------------------------------------------------------------------------- retries

#: Connection-level failures: no answer came back (the connection could not be made, broke, or
#: was closed unanswered). Safe to send again because every call is idempotent. A read timeout is
#: not among them: the service is slow, and sending the work again would only add to its load.
RETRIED_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed call is tried again, and how long the client waits first.

    Retried, up to ``retries`` times: the connection-level failures of ``RETRIED_ERRORS`` (the
    request was not answered), and a 503 whose ``Retry-After`` is at most ``max_retry_after``
    seconds. Never: any other status (4xx above all), a timeout waiting for the answer.
    Retry n (1, 2, …) waits a random time between half and all of
    ``min(backoff × 2^(n-1), max_backoff)`` seconds — after a 503 that on top of its Retry-After.
    """

    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 5.0
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError(f"a retry policy's numbers are ≥ 0: {self}")

    def jitter(self, retry: int) -> float:
        """The randomized exponential backoff before retry ``retry`` (1, 2, …)."""
        ceiling = min(self.backoff * 2 ** (retry - 1), self.max_backoff)
        return random.uniform(ceiling / 2, ceiling)

    def delay(self, retry: int, outcome: httpx.Response | Exception) -> float | None:
        """Seconds to wait before retry ``retry`` (1, 2, …) after ``outcome``; None: do not retry."""
        if retry > self.retries:
            return None
        if isinstance(outcome, Exception):
            return self.jitter(retry) if isinstance(outcome, RETRIED_ERRORS) else None
        if outcome.status_code != 503:
            return None
        wait = retry_after_seconds(outcome.headers.get("Retry-After"))
        if wait is None or wait > self.max_retry_after:
            return None
        return wait + self.jitter(retry)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) in seconds from ``now``; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --------------------------------------------------------------------------- requests and answers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request, and how its success answer becomes the method's result."""

    service: Service
    method: str
    url: str
    parse: Callable[[httpx.Response], T]
    options: Mapping[str, Any] = field(default_factory=dict)  # httpx's params, files, content, json, headers
    answers: frozenset[int] = frozenset()  # error statuses that ``parse`` reads itself

    def result(self, response: httpx.Response, attempts: int) -> T:
        if not response.is_success and response.status_code not in self.answers:
            raise _http_error(response, self, attempts)
        try:
            return self.parse(response)
        except (ValueError, KeyError, TypeError) as exc:  # json, base64 and shape errors
            raise ServiceError(
                response.status_code,
                "bad_response",
                f"{self.method} {self.url} answered what the client cannot read ({exc!r})",
                f"is {self.url} a latentwire {self.service}?",
                attempts=attempts,
            ) from exc


def _http_error(response: httpx.Response, call: _Call[Any], attempts: int) -> ServiceError:
    """An error answer → ServiceError: the JSON error shape's fields, else ``http_error``."""
    try:
        body = response.json()
        error, detail, hint = body["error"], body["detail"], body.get("hint", "")
        if not all(isinstance(v, str) for v in (error, detail, hint)):
            raise TypeError("not the error shape")
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = response.text.strip()[:200] or response.reason_phrase
        hint = f"{call.method} {call.url} did not answer in the latentwire error shape"
        return ServiceError(response.status_code, "http_error", detail, hint, attempts=attempts)
    return ServiceError(response.status_code, error, detail, hint, attempts=attempts)


def _connection_error(exc: Exception, call: _Call[Any], attempts: int) -> ServiceConnectionError:
    """A transport failure (no HTTP answer) → ServiceConnectionError with the code that says what."""
    if isinstance(exc, httpx.ConnectError):
        error = "unreachable"
    elif isinstance(exc, httpx.TimeoutException):
        error = "timeout"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        error = "bad_url"
    elif isinstance(exc, httpx.NetworkError | httpx.ProtocolError):
        error = "connection_lost"
    else:
        error = "transport_error"
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    detail = f"{call.method} {call.url}: {exc or type(exc).__name__}{tries}"
    where = f"{call.service}_url=, --{call.service}-url or $LATENTWIRE_{call.service.upper()}_URL"
    if error == "timeout":
        hint = f"the {call.service} is slow or overloaded: try later, or allow a longer timeout"
    elif error == "bad_url":
        hint = f"a service URL looks like http://127.0.0.1:8001 ({where})"
    else:
        hint = f"is the {call.service} running at that address? ({where})"
    return ServiceConnectionError(0, error, detail, hint, attempts=attempts)


class _Attempts(Generic[T]):
    """The tries of one call: after each, whether to try again; at the end, the result or the error."""

    def __init__(self, call: _Call[T], policy: RetryPolicy) -> None:
        self.call, self.policy, self.made = call, policy, 0
        self.outcome: httpx.Response | Exception | None = None

    def retry_delay(self, outcome: httpx.Response | Exception) -> float | None:
        """Record a try's outcome; seconds to wait before the next try, or None: done."""
        self.made += 1
        self.outcome = outcome
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            return None
        return self.policy.delay(self.made, outcome)

    def result(self) -> T:
        if isinstance(self.outcome, Exception):
            raise _connection_error(self.outcome, self.call, self.made) from self.outcome
        assert self.outcome is not None, "result() before any try"
        return self.call.result(self.outcome, self.made)


def _content(response: httpx.Response) -> bytes:
    return response.content


def _json(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _codes(response: httpx.Response) -> list[bytes]:
    return [_from_b64url(item["code"]) for item in _json(response)["codes"]]


def _pngs(response: httpx.Response) -> list[bytes]:
    return [base64.b64decode(item, validate=True) for item in _json(response)["images"]]


def _is_ready(response: httpx.Response) -> bool:
    return response.status_code == 200


def encode_params(*, quality: int | None, denoise: bool, preprocess: bool) -> dict[str, str]:
    """The sender's query parameters; defaults are left out (the sender's default level applies)."""
    params: dict[str, str] = {}
    if quality is not None:
        params["quality"] = str(int(quality))
    if denoise:
        params["denoise"] = "true"
    if not preprocess:
        params["preprocess"] = "false"
    return params


def decode_params(*, scale: int) -> dict[str, str]:
    return {} if scale == 1 else {"scale": str(int(scale))}


HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _ClientBase(Generic[HttpT, TransportT]):
    """URLs, retry policy and the requests of every method; the subclasses send them."""

    def __init__(
        self,
        *,
        sender_url: str | None = None,
        receiver_url: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        retry: RetryPolicy | None = None,
        transport: TransportT | None = None,
        api_key: str | None = None,
    ) -> None:
        sender = sender_url or os.environ.get("LATENTWIRE_SENDER_URL") or DEFAULT_SENDER_URL
        receiver = receiver_url or os.environ.get("LATENTWIRE_RECEIVER_URL") or DEFAULT_RECEIVER_URL
        self.sender_url, self.receiver_url = sender.rstrip("/"), receiver.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy(retries=retries)
        self._http: HttpT = self._open(timeout, transport)
        # For services started with API keys (LATENTWIRE_API_KEYS); from the environment by default
        # so that a key never has to appear on a command line.
        key = api_key or os.environ.get("LATENTWIRE_API_KEY")
        if key:
            self._http.headers["X-API-Key"] = key

    def _open(self, timeout: float, transport: TransportT | None) -> HttpT:
        raise NotImplementedError

    def _url(self, service: Service, path: str) -> str:
        if service not in ("sender", "receiver"):
            raise ValueError(f"service is 'sender' or 'receiver', got {service!r}")
        return f"{self.sender_url if service == 'sender' else self.receiver_url}{path}"

    def _encode_call(
        self, image: bytes, quality: int | None, denoise: bool, preprocess: bool
    ) -> _Call[bytes]:
        params = encode_params(quality=quality, denoise=denoise, preprocess=preprocess)
        return _Call(
            "sender",
            "POST",
            self._url("sender", "/encode"),
            _content,
            {
                "params": params,
                "files": {"file": ("image", image, "application/octet-stream")},
                "headers": {"Accept": "application/octet-stream"},
            },
        )

    def _encode_batch_call(
        self, images: Sequence[bytes], quality: int | None, denoise: bool, preprocess: bool
    ) -> _Call[list[bytes]]:
        params = encode_params(quality=quality, denoise=denoise, preprocess=preprocess)
        files = [("files", (f"image{i}", data, "application/octet-stream")) for i, data in enumerate(images)]
        return _Call(
            "sender",
            "POST",
            self._url("sender", "/encode/batch"),
            _codes,
            {"params": params, "files": files},
        )

    def _decode_call(self, code: bytes, scale: int) -> _Call[bytes]:
        return _Call(
            "receiver",
            "POST",
            self._url("receiver", "/decode"),
            _content,
            {
                "params": decode_params(scale=scale),
                "content": code,
                "headers": {"Content-Type": "application/octet-stream"},
            },
        )

    def _decode_batch_call(self, codes: Sequence[bytes], scale: int) -> _Call[list[bytes]]:
        return _Call(
            "receiver",
            "POST",
            self._url("receiver", "/decode/batch"),
            _pngs,
            {"params": decode_params(scale=scale), "json": {"codes": [_b64url(c) for c in codes]}},
        )

    def _get_call(self, service: Service, path: str) -> _Call[dict[str, Any]]:
        return _Call(service, "GET", self._url(service, path), _json)

    def _ready_call(self, service: Service) -> _Call[bool]:
        return _Call(service, "GET", self._url(service, "/readyz"), _is_ready, answers=frozenset({503}))


class LatentwireClient(_ClientBase[httpx.Client, httpx.BaseTransport]):
    """Talks to a sender (``/encode``) and a receiver (``/decode``) over HTTP.

    Every method takes keyword-only options after its input; all of them are idempotent (the same
    input gives the same output, and the services keep no state), so every one may be retried.

    Errors: every failure is a ``ServiceError``: ``status``, ``error``, ``detail``, ``hint`` from
    the service's JSON error body (``http_error`` for an error answer without it), or a
    ``ServiceConnectionError`` with ``status`` 0 when no HTTP answer came back (``unreachable``,
    ``timeout``, ``connection_lost``, ``bad_url``, ``transport_error``).

    Retries (``retries``, default 2, i.e. at most 3 tries; 0 disables; ``retry``, a whole
    ``RetryPolicy``, overrides it): a call is tried again after a connection-level failure before any answer
    (connect error or connect timeout, the connection dropped while sending or reading, the server
    closed it without answering), and after a 503 whose ``Retry-After`` is at most 10 s — it
    waits those seconds first; a 503 without the header or with a longer one is raised at once.
    Never after a 4xx, another 5xx, or a timeout waiting for the
    answer. Retry n waits a random time between half and all of ``min(0.5 s × 2^(n-1), 5 s)``
    (on top of a 503's Retry-After).

    ``timeout``: seconds for each of connecting, sending and reading (httpx's timeout), per try.
    ``transport``: an httpx transport (tests, proxies).
    """

    def _open(self, timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> LatentwireClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    _sleep = staticmethod(time.sleep)

    def _try(self, call: _Call[Any]) -> httpx.Response | Exception:
        try:
            return self._http.request(call.method, call.url, **call.options)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return exc

    def _send(self, call: _Call[T]) -> T:
        attempts = _Attempts(call, self.retry)
        while (delay := attempts.retry_delay(self._try(call))) is not None:
            self._sleep(delay)
        return attempts.result()

    def encode(
        self, image: bytes, *, quality: int | None = None, denoise: bool = False, preprocess: bool = True
    ) -> bytes:
        """One image file's bytes (PNG, JPEG, …) → its code.

        ``quality``: the level (1 smallest … 6 best, 0 the tutorial's model; None: the sender's
        default); ``denoise``: the denoising model; ``preprocess=False``: the image is 28×28 pixels
        sent as they are.
        """
        return self._send(self._encode_call(image, quality, denoise, preprocess))

    def encode_batch(
        self,
        images: Sequence[bytes],
        *,
        quality: int | None = None,
        denoise: bool = False,
        preprocess: bool = True,
    ) -> list[bytes]:
        """Several images in one request → their codes, in order.

        The options are ``encode``'s; all the images are encoded by the same model.
        """
        return self._send(self._encode_batch_call(images, quality, denoise, preprocess))

    def decode(self, code: bytes, *, scale: int = 1) -> bytes:
        """One code → the reconstructed digit as PNG bytes, 28·scale pixels square.

        The code says which model made it; the receiver picks the matching decoder.
        """
        return self._send(self._decode_call(code, scale))

    def decode_batch(self, codes: Sequence[bytes], *, scale: int = 1) -> list[bytes]:
        """Several codes in one request → PNG bytes, in order.

        The codes may come from different levels; each is decoded by its own model.
        """
        return self._send(self._decode_batch_call(codes, scale))

    def model(self, service: Service = "sender") -> dict[str, Any]:
        """GET /v1/model of the sender or the receiver: the levels it serves.

        The sender's answer also names its ``default_quality``.
        """
        return self._send(self._get_call(service, "/v1/model"))

    def health(self, service: Service = "sender") -> dict[str, Any]:
        """GET /healthz: ``{"status": "ok"}`` while the process answers."""
        return self._send(self._get_call(service, "/healthz"))

    def ready(self, service: Service = "sender") -> bool:
        """GET /readyz: True once the models are loaded, False while loading (raises if unreachable)."""
        return self._send(self._ready_call(service))


class AsyncLatentwireClient(_ClientBase[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """``LatentwireClient`` for asyncio and trio: ``async with``, ``await client.encode(…)``, ``aclose()``.

    The same methods, options, errors and retries (see ``LatentwireClient``); it waits between
    tries with ``anyio.sleep``, so other tasks run meanwhile.
    """

    def _open(self, timeout: float, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncLatentwireClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    _sleep = staticmethod(anyio.sleep)

    async def _try(self, call: _Call[Any]) -> httpx.Response | Exception:
        try:
            return await self._http.request(call.method, call.url, **call.options)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return exc

    async def _send(self, call: _Call[T]) -> T:
        attempts = _Attempts(call, self.retry)
        while (delay := attempts.retry_delay(await self._try(call))) is not None:
            await self._sleep(delay)
        return attempts.result()

    async def encode(
        self, image: bytes, *, quality: int | None = None, denoise: bool = False, preprocess: bool = True
    ) -> bytes:
        """As ``LatentwireClient.encode``."""
        return await self._send(self._encode_call(image, quality, denoise, preprocess))

    async def encode_batch(
        self,
        images: Sequence[bytes],
        *,
        quality: int | None = None,
        denoise: bool = False,
        preprocess: bool = True,
    ) -> list[bytes]:
        """As ``LatentwireClient.encode_batch``."""
        return await self._send(self._encode_batch_call(images, quality, denoise, preprocess))

    async def decode(self, code: bytes, *, scale: int = 1) -> bytes:
        """As ``LatentwireClient.decode``."""
        return await self._send(self._decode_call(code, scale))

    async def decode_batch(self, codes: Sequence[bytes], *, scale: int = 1) -> list[bytes]:
        """As ``LatentwireClient.decode_batch``."""
        return await self._send(self._decode_batch_call(codes, scale))

    async def model(self, service: Service = "sender") -> dict[str, Any]:
        """As ``LatentwireClient.model``."""
        return await self._send(self._get_call(service, "/v1/model"))

    async def health(self, service: Service = "sender") -> dict[str, Any]:
        """As ``LatentwireClient.health``."""
        return await self._send(self._get_call(service, "/healthz"))

    async def ready(self, service: Service = "sender") -> bool:
        """As ``LatentwireClient.ready``."""
        return await self._send(self._ready_call(service))
