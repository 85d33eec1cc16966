"""HTTP plumbing both services share: the error mapping, bounded body reads, health routes, schemas.

Kept here (not in either service) so the sender and the receiver answer errors and health
probes identically; the services stay thin layers of routes over the codec.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentwire import __version__
from latentwire.codec import ModelHalf
from latentwire.errors import BadCodeError, BadRequestError, LatentwireError, TooLargeError
from latentwire.ladder import Ladder, describe

__all__ = [
    "ErrorBody",
    "LevelInfo",
    "ModelInfo",
    "b64url_decode",
    "b64url_encode",
    "create_service_app",
    "health_router",
    "install_error_handlers",
    "media_type",
    "model_info",
    "read_body",
    "serve",
    "wants_octet_stream",
]

log = logging.getLogger("latentwire.web")


class ErrorBody(BaseModel):
    """Every 4xx answer has this shape."""

    error: str = Field(description="machine-readable error code, e.g. bad_code, foreign_model, too_large")
    detail: str = Field(description="what was wrong")
    hint: str = Field(description="what is accepted instead")


class LevelInfo(BaseModel):
    """One checkpoint of the ladder."""

    quality: int = Field(description="the quality level (?quality=); 0 is the tutorial's v1 model")
    denoise: bool = Field(description="trained to remove noise from its input (?denoise=true)")
    model_id: str
    preset: str
    latent_shape: list[int]
    code_format_version: int
    code_bytes: float | None = Field(description="mean code size on the MNIST test set, framing included")
    psnr: float | None = Field(description="PSNR (dB) of the mean MSE over the MNIST test set")
    metrics: dict[str, float] = Field(description="every test-set metric the trainer recorded")
    data_checksum: str
    training: dict[str, Any]


class ModelInfo(BaseModel):
    """What GET /v1/model says: the default model's identity, and every level served."""

    half: str = Field(description="encoder (the sender) or decoder (the receiver)")
    default_quality: int | None = Field(description="the level /encode uses without ?quality= (sender only)")
    model_id: str = Field(description="the default level's model id")
    preset: str
    latent_shape: list[int]
    code_format_version: int
    metrics: dict[str, float]
    levels: list[LevelInfo]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "malformed request",
        409: "code from another model",
        413: "too large",
        415: "unsupported content type",
        422: "not an image / bad code",
    }.items()
}


def _json_error(
    status: int, code: str, detail: str, hint: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "detail": detail, "hint": hint}, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree (and FastAPI's own errors) onto the one JSON error shape."""

    @app.exception_handler(LatentwireError)
    async def _latentwire(_: Request, exc: LatentwireError) -> JSONResponse:
        status = exc.status if 400 <= exc.status < 500 else 500
        return _json_error(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()
        )
        return _json_error(422, "bad_request", problems or "invalid request", "see the OpenAPI docs at /docs")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # keep starlette's headers: a 405 must say which methods are allowed
        return _json_error(
            exc.status_code, "http_error", str(exc.detail), "see the OpenAPI docs at /docs", exc.headers
        )


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def wants_octet_stream(request: Request) -> bool:
    return "application/octet-stream" in request.headers.get("accept", "").lower()


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The whole body, refusing more than ``max_bytes`` before reading it all; empty bodies too.

    The body is cached on the request, so ``await request.form()`` afterwards parses it from
    memory instead of reading an unbounded stream.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(
            f"the body is {declared} bytes, the limit is {max_bytes}", hint=f"send at most {max_bytes} bytes"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLargeError(
                f"the body exceeds the limit of {max_bytes} bytes", hint=f"send at most {max_bytes} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise BadRequestError("the request body is empty", hint="send an image (or a code) in the body")
    request._body = body  # starlette's own cache: form() and json() reuse it
    return body


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; anything else is a BadCodeError."""
    cleaned = text.strip()
    if not cleaned:
        raise BadCodeError("the code is empty")
    if "+" in cleaned or "/" in cleaned:
        raise BadCodeError(
            "the code is standard base64, not base64url", hint="use - and _ instead of + and /"
        )
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadCodeError(f"the code is not valid base64url: {exc}") from exc


def model_info(ladder: Ladder[Any], *, half: str, default_quality: int | None) -> ModelInfo:
    """GET /v1/model's answer for a ladder of checkpoint halves."""
    models: list[ModelHalf] = ladder.levels()
    default: ModelHalf = ladder.default
    levels = [
        LevelInfo(
            quality=m.level,
            denoise=m.denoise,
            model_id=m.model_id,
            preset=str(m.meta.preset.get("name", "")),
            latent_shape=list(m.latent_shape),
            code_format_version=m.format_version,
            code_bytes=m.meta.metrics.get("code_bytes"),
            psnr=m.meta.metrics.get("psnr"),
            metrics=m.meta.metrics,
            data_checksum=m.meta.data_checksum,
            training=m.meta.training,
        )
        for m in models
    ]
    return ModelInfo(
        half=half,
        default_quality=default_quality,
        model_id=default.model_id,
        preset=str(default.meta.preset.get("name", "")),
        latent_shape=list(default.latent_shape),
        code_format_version=default.format_version,
        metrics=default.meta.metrics,
        levels=levels,
    )


def create_service_app(
    *,
    title: str,
    description: str,
    router: APIRouter,
    ladder: Ladder[Any] | None,
    load: Callable[[], Ladder[Any]],
    overrides: dict[Callable[..., Any], Callable[..., Any]],
) -> FastAPI:
    """A service's ASGI app: its routes, the health routes and the error mapping.

    Without ``ladder``, ``load()`` runs at startup (``/readyz`` answers 200 once it has).
    ``overrides`` become ``app.dependency_overrides`` (the resolved settings).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ladder is None:
            app.state.ladder = load()
        log.info("%s ready: %s", title, describe(app.state.ladder))
        yield

    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.state.ladder = ladder
    app.dependency_overrides.update(overrides)
    install_error_handlers(app)
    app.include_router(health_router())
    app.include_router(router)
    return app


def serve(
    *, half: str, load: Callable[[], Ladder[Any]], app: Callable[[Ladder[Any]], FastAPI], host: str, port: int
) -> int:
    """Load the models before binding the port (a bad checkpoint fails fast and clearly), then serve."""
    try:
        ladder = load()
    except LatentwireError as exc:
        log.error("cannot load the %s: %s (%s)", half, exc, exc.hint)
        return 2
    uvicorn.run(app(ladder), host=host, port=port, log_level="info")
    return 0


def health_router() -> APIRouter:
    """/healthz (the process answers) and /readyz (the models are loaded)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="The model is loaded and requests will be served",
        responses={503: {"description": "not ready yet"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        ladder: Ladder[Any] | None = request.app.state.ladder
        if ladder is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return JSONResponse(content={"status": "ready", "model_id": ladder.default.model_id})

    return router
