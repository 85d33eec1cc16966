"""A service's ASGI app: health routes, the error mapping, and the lifespan that loads the
models and starts the micro-batcher; and ``serve``, which loads before it binds the port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from latentwire import __version__
from latentwire.errors import LatentwireError
from latentwire.ladder import Ladder, describe
from latentwire_http.batching import MicroBatcher
from latentwire_http.errors import install_error_handlers
from latentwire_http.server import configure_threads, run_app, settle_garbage_collector
from latentwire_http.settings import ServiceSettings

__all__ = ["create_service_app", "health_router", "serve"]

log = logging.getLogger("latentwire.http")

LadderT = Ladder[Any]


def create_service_app(
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    settings: ServiceSettings,
    ladder: LadderT | None,
    load: Callable[[], LadderT],
    batcher: Callable[[LadderT], MicroBatcher[Any, Any]],
    on_startup: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """The app: ``app.state`` holds ``settings``, ``ladder`` and ``batcher`` for the routes.

    Without ``ladder``, ``load()`` runs at startup (``/readyz`` answers 200 once it has).
    ``batcher(ladder)`` makes the micro-batcher, started with the app and stopped after the
    last in-flight request (uvicorn drains them first on SIGTERM). ``on_startup(app)`` adds what
    else a service keeps in ``app.state`` (it runs in the event loop).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ladder is None:
            app.state.ladder = await run_in_threadpool(load)
        app.state.batcher = batcher(app.state.ladder)
        app.state.batcher.start()
        if on_startup is not None:
            on_startup(app)
        settle_garbage_collector()
        log.info("%s ready: %s", title, describe(app.state.ladder))
        try:
            yield
        finally:
            await app.state.batcher.close()

    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.state.settings = settings
    app.state.ladder = ladder
    app.state.batcher = None
    install_error_handlers(app)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    return app


def serve(
    *, half: str, settings: ServiceSettings, load: Callable[[], LadderT], app: Callable[[LadderT], FastAPI]
) -> int:
    """Load the models before binding the port (a bad checkpoint fails fast and clearly), then serve."""
    configure_threads(settings.torch_threads)
    try:
        ladder = load()
    except LatentwireError as exc:
        log.error("cannot load the %s: %s (%s)", half, exc, exc.hint)
        return 2
    run_app(
        app(ladder),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        graceful_timeout_s=settings.graceful_timeout_s,
    )
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
        ladder: LadderT | None = request.app.state.ladder
        if ladder is None or request.app.state.batcher is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return JSONResponse(content={"status": "ready", "model_id": ladder.default.model_id})

    return router
