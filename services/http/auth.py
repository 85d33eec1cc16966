"""Optional API keys: a pure ASGI middleware in front of every route but the open ones.

Off unless keys are configured (``api_keys`` / ``api_keys_file``). A request then needs one of
them, as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; without one it gets::

    HTTP/1.1 401 Unauthorized
    WWW-Authenticate: Bearer
    {"error": "unauthorized", "detail": "…", "hint": "…"}

``/healthz`` and ``/readyz`` stay open (orchestrators probe them), ``/metrics`` while
``metrics_open``, and the static files an app serves (the sender's demo page under ``/demo/``:
public files that do no work; the requests the page makes still need a key). The check runs
before routing, so an unknown path gets 401 too, not 404.

Keys are compared in constant time: the SHA-256 digest of the presented key against every
configured key's digest with ``hmac.compare_digest``, with no early exit (neither which key
matched nor a key's length shows in the timing). Keys are never logged nor echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from latentwire_http.errors import json_error

__all__ = ["OPEN_PATHS", "ApiKeyMiddleware", "KeyRing", "is_loopback"]

#: Paths that never need a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_AUTHORIZATION = b"authorization"
_X_API_KEY = b"x-api-key"
_HINT = "send one of this service's API keys as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


class KeyRing:
    """The configured keys, kept as SHA-256 digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode("utf-8")).digest() for key in keys]
        if not self._digests:
            raise ValueError("a KeyRing needs at least one key")

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, presented: bytes) -> bool:
        """Whether ``presented`` is one of the keys; every key is compared, whatever matches."""
        digest = hashlib.sha256(presented).digest()
        found = False
        for expected in self._digests:
            found |= hmac.compare_digest(digest, expected)
        return found


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request offers: ``Authorization: Bearer <key>`` and ``X-API-Key: <key>``."""
    keys = []
    for name, value in headers:
        if name == _AUTHORIZATION:
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == _X_API_KEY and value.strip():
            keys.append(value.strip())
    return keys


class ApiKeyMiddleware:
    """401 for an HTTP request without a valid key, unless its path is open."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        open_paths: Iterable[str] = OPEN_PATHS,
        open_prefixes: Iterable[str] = (),
    ) -> None:
        """``open_paths`` are open exactly; every path under an ``open_prefixes`` entry
        (``/demo/`` opens ``/demo/index.html``, ``/demo/a/b``) is open too."""
        self.app = app
        self.keys = keys
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        offered = presented_keys(scope["headers"])
        # Every offered key is checked (no short-circuit between them either).
        accepted = False
        for key in offered:
            accepted |= self.keys.accepts(key)
        if accepted:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008)(scope, receive, send)  # policy violation
            return
        detail = "an invalid API key" if offered else "no API key"
        response = json_error(
            401,
            "unauthorized",
            f"this service requires an API key; the request carried {detail}",
            _HINT,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _is_open(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path in self.open_paths:
            return True
        # Under an open prefix, but never a path that climbs out of it (defence in depth: the
        # router does not normalize paths, so such a path could only reach the static files).
        return bool(self.open_prefixes) and path.startswith(self.open_prefixes) and "/.." not in path


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service to this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a hostname (or an empty one: every interface) may be reachable from outside
