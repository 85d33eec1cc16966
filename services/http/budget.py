"""A budget of request-body bytes held in memory at once, refused (503) rather than queued."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from latentwire_http.errors import OverloadedError

__all__ = ["ByteBudget"]


class ByteBudget:
    """Reserve a request's body size before reading it; ``OverloadedError`` when it does not fit.

    The size is the declared Content-Length (a body longer than declared is cut off by the
    server), or the body limit for a chunked upload of unknown length.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    @contextmanager
    def hold(self, request: Request, *, max_body_bytes: int) -> Iterator[None]:
        declared = request.headers.get("content-length", "")
        size = min(int(declared), max_body_bytes) if declared.isdigit() else max_body_bytes
        if self.held + size > self.total and self.held > 0:  # one body always fits, however large
            raise OverloadedError(
                f"{self.held} bytes of request bodies are being processed; the limit is {self.total}",
                retry_after=1,
            )
        self.held += size
        try:
            yield
        finally:
            self.held -= size
