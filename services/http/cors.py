"""Cross-origin requests (CORS), for a browser page served from another origin (the demo).

Off unless ``cors_origins`` names origins: no middleware at all then, and browsers keep other
origins' pages from reading the answers. With origins, Starlette's ``CORSMiddleware`` answers
their preflight requests (``OPTIONS`` with ``Access-Control-Request-Method``) itself, before
the API keys are checked (a browser never sends credentials with a preflight), and adds
``Access-Control-Allow-Origin`` to every answer to an allowed origin, refusals included, so the
page can read their JSON error body. It allows GET and POST, the request headers the services
read, and exposes the response headers they set.

A refused preflight (an origin, method or header not allowed) is a 400 in the one error shape,
not Starlette's plain-text one.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from latentwire_http.errors import json_error

__all__ = ["CORS_ALLOW_HEADERS", "CORS_EXPOSE_HEADERS", "CORS_METHODS", "JsonCORSMiddleware"]

CORS_METHODS = ("GET", "POST")
#: Request headers a page may send (besides the CORS-safelisted Accept and Content-Type).
CORS_ALLOW_HEADERS = ("Content-Type", "Accept", "Authorization", "X-API-Key", "X-Request-ID")
#: Response headers a page may read (besides the CORS-safelisted Content-Type and Content-Length).
CORS_EXPOSE_HEADERS = ("X-Request-ID", "X-Latentwire-Model", "X-Latentwire-Quality", "Retry-After")
#: Seconds a browser may cache a preflight answer.
CORS_MAX_AGE = 600


class JsonCORSMiddleware(CORSMiddleware):
    """``CORSMiddleware`` for ``origins`` with the services' methods and headers; JSON refusals."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=list(origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_credentials=False,
            max_age=CORS_MAX_AGE,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower().startswith("access-control-") or name.lower() == "vary"
        }
        return json_error(
            400,
            "bad_request",
            f"cross-origin request refused (not allowed: {refused})",
            "the service accepts cross-origin GET and POST requests from the origins of its "
            f"cors_origins setting only, with the headers {', '.join(CORS_ALLOW_HEADERS)}",
            headers=headers,
        )
