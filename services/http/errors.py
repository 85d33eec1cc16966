"""What each latentwire error means to an HTTP client, and the handlers that answer it.

Every refusal has one JSON shape, ``{"error": code, "detail": message, "hint": hint}``; the model
package's error tree (``latentwire.errors``) carries no status, so the mapping lives here. A
class not listed inherits its nearest listed base's status (``UnsupportedVersionError`` is a
``BadCodeError``: 422).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentwire.errors import (
    BadCheckpointError,
    BadCodeError,
    BadImageError,
    BadRequestError,
    DataUnavailableError,
    ForeignModelError,
    LatentwireError,
    TooLargeError,
    UnsupportedMediaError,
)
from latentwire_http.metrics import count_rejection

__all__ = ["STATUS", "OverloadedError", "install_error_handlers", "json_error", "status_of"]


class OverloadedError(LatentwireError):
    """The service's work queue is full: come back in ``retry_after`` seconds (503)."""

    code = "overloaded"
    default_hint = "retry after the number of seconds in the Retry-After header"

    def __init__(self, message: str, *, retry_after: int = 1, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


STATUS: Mapping[type[LatentwireError], int] = {
    BadImageError: 422,
    UnsupportedMediaError: 415,
    TooLargeError: 413,
    BadRequestError: 400,
    BadCodeError: 422,
    ForeignModelError: 409,
    OverloadedError: 503,
    # The server's own fault, not the client's: a bad checkpoint or missing data.
    BadCheckpointError: 500,
    DataUnavailableError: 503,
}


def status_of(error: LatentwireError) -> int:
    """The status of the nearest class in ``error``'s hierarchy that ``STATUS`` lists (else 400)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def json_error(
    status: int, code: str, detail: str, hint: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "detail": detail, "hint": hint}, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree (and FastAPI's own errors) onto the one JSON error shape."""

    @app.exception_handler(LatentwireError)
    async def _latentwire(request: Request, exc: LatentwireError) -> JSONResponse:
        headers = None
        if isinstance(exc, OverloadedError):
            count_rejection(request)
            # Closing the connection stops the rest of a refused upload at the client's next write,
            # instead of the event loop reading (and discarding) megabytes it has already refused.
            headers = {"Retry-After": str(exc.retry_after), "Connection": "close"}
        return json_error(status_of(exc), exc.code, exc.message, exc.hint, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()
        )
        return json_error(422, "bad_request", problems or "invalid request", "see the OpenAPI docs at /docs")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # keep starlette's headers: a 405 must say which methods are allowed
        return json_error(
            exc.status_code, "http_error", str(exc.detail), "see the OpenAPI docs at /docs", exc.headers
        )
