"""A typed Python client for the sender and the receiver.

>>> with LatentwireClient() as client:                      # URLs from the environment or defaults
...     code = client.encode(open("digit.png", "rb").read())
...     png = client.decode(code, scale=4)
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

__all__ = ["DEFAULT_RECEIVER_URL", "DEFAULT_SENDER_URL", "LatentwireClient", "ServiceError"]

DEFAULT_SENDER_URL = "http://127.0.0.1:8001"
DEFAULT_RECEIVER_URL = "http://127.0.0.1:8002"


class ServiceError(Exception):
    """A service answered with an error; carries its JSON error body."""

    def __init__(self, status: int, error: str, detail: str, hint: str = "") -> None:
        super().__init__(f"{status} {error}: {detail}" + (f" ({hint})" if hint else ""))
        self.status, self.error, self.detail, self.hint = status, error, detail, hint


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LatentwireClient:
    """Talks to a sender (``/encode``) and a receiver (``/decode``) over HTTP."""

    def __init__(
        self,
        *,
        sender_url: str | None = None,
        receiver_url: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.sender_url = sender_url or os.environ.get("LATENTWIRE_SENDER_URL", DEFAULT_SENDER_URL)
        self.receiver_url = receiver_url or os.environ.get("LATENTWIRE_RECEIVER_URL", DEFAULT_RECEIVER_URL)
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> LatentwireClient:
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        response = self._http.post(url, **kwargs)
        if response.is_error:
            try:
                body = response.json()
                raise ServiceError(response.status_code, body["error"], body["detail"], body.get("hint", ""))
            except (ValueError, KeyError, TypeError):
                raise ServiceError(response.status_code, "http_error", response.text[:200]) from None
        return response

    def encode(self, image: bytes, *, preprocess: bool = True) -> bytes:
        """One image file's bytes (PNG, JPEG, …) → its code."""
        response = self._post(
            f"{self.sender_url}/encode",
            params={"preprocess": str(preprocess).lower()},
            files={"file": ("image", image, "application/octet-stream")},
            headers={"Accept": "application/octet-stream"},
        )
        return response.content

    def encode_batch(self, images: Sequence[bytes], *, preprocess: bool = True) -> list[bytes]:
        """Several images in one request → their codes, in order."""
        response = self._post(
            f"{self.sender_url}/encode/batch",
            params={"preprocess": str(preprocess).lower()},
            files=[
                ("files", (f"image{i}", data, "application/octet-stream")) for i, data in enumerate(images)
            ],
        )
        return [_from_b64url(item["code"]) for item in response.json()["codes"]]

    def decode(self, code: bytes, *, scale: int = 1) -> bytes:
        """One code → the reconstructed digit as PNG bytes."""
        response = self._post(
            f"{self.receiver_url}/decode",
            params={"scale": scale},
            content=code,
            headers={"Content-Type": "application/octet-stream"},
        )
        return response.content

    def decode_batch(self, codes: Sequence[bytes], *, scale: int = 1) -> list[bytes]:
        """Several codes in one request → PNG bytes, in order."""
        response = self._post(
            f"{self.receiver_url}/decode/batch",
            params={"scale": scale},
            json={"codes": [_b64url(c) for c in codes]},
        )
        return [base64.b64decode(item) for item in response.json()["images"]]

    def model(self, service: str = "sender") -> dict[str, Any]:
        """GET /v1/model of the sender or the receiver."""
        url = self.sender_url if service == "sender" else self.receiver_url
        response = self._http.get(f"{url}/v1/model")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
