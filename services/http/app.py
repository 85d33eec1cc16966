"""A service's ASGI app: health routes, the error mapping, and the lifespan that loads the
models and starts the micro-batcher; and ``serve``, which loads before it binds the port.

Every app also gets the operations layer: ``GET /metrics`` (``latentwire_http.metrics``), a
request id and one log line per request (``latentwire_http.observability``) and, when keys are
configured, API keys (``latentwire_http.auth``); with ``cors_origins``, CORS
(``latentwire_http.cors``), outside the keys: a browser's preflight carries no key. An app may
also serve directories of static files (the sender's demo page), open without keys::

    ServerErrorMiddleware → ObservabilityMiddleware → CORS (origins only) → ApiKeyMiddleware
    (keys only) → routes
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from latentwire import __version__
from latentwire.errors import LatentwireError
from latentwire.ladder import Ladder, describe
from latentwire_http.auth import OPEN_PATHS, ApiKeyMiddleware, KeyRing, is_loopback
from latentwire_http.batching import MicroBatcher
from latentwire_http.cors import JsonCORSMiddleware
from latentwire_http.errors import install_error_handlers
from latentwire_http.metrics import ServiceMetrics, instrument_batcher, metrics_router, route_templates
from latentwire_http.observability import ObservabilityMiddleware, configure_logging
from latentwire_http.server import configure_threads, run_app, settle_garbage_collector
from latentwire_http.settings import ServiceSettings

__all__ = ["create_service_app", "health_router", "mount_static", "serve"]

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
    static: Mapping[str, Path] | None = None,
) -> FastAPI:
    """The app: ``app.state`` holds ``settings``, ``ladder`` and ``batcher`` for the routes.

    Without ``ladder``, ``load()`` runs at startup (``/readyz`` answers 200 once it has).
    ``batcher(ladder)`` makes the micro-batcher, started with the app and stopped after the
    last in-flight request (uvicorn drains them first on SIGTERM). ``on_startup(app)`` adds what
    else a service keeps in ``app.state`` (it runs in the event loop). ``app.state.metrics``
    holds the app's metrics (its own registry).

    ``static`` maps a path prefix (``/demo``) to a directory served below it (``/demo/`` answers
    the directory's ``index.html``, ``/demo`` redirects there), open without API keys and left
    out of the OpenAPI document.
    """
    keys = settings.api_key_values()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ladder is None:
            app.state.ladder = await run_in_threadpool(load)
        app.state.batcher = batcher(app.state.ladder)
        instrument_batcher(app.state.batcher, app.state.metrics)
        app.state.batcher.start()
        if on_startup is not None:
            on_startup(app)
        settle_garbage_collector()
        log.info("%s ready: %s", title, describe(app.state.ladder))
        if keys:
            log.info("%s: API keys required (%d configured)", title, len(keys))
        elif not is_loopback(settings.host):
            log.warning(
                "%s is bound to %s without API keys: anyone who can reach it can use it"
                " (set LATENTWIRE_API_KEYS or LATENTWIRE_API_KEYS_FILE, or bind 127.0.0.1)",
                title,
                settings.host,
            )
        try:
            yield
        finally:
            await app.state.batcher.close()

    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.state.settings = settings
    app.state.ladder = ladder
    app.state.batcher = None
    app.state.metrics = ServiceMetrics(app, service=_service_name(settings, title))
    install_error_handlers(app)
    own = [health_router(), metrics_router(), *routers]
    for router in own:
        app.include_router(router)
    served = {prefix.rstrip("/"): directory for prefix, directory in (static or {}).items()}
    for prefix, directory in served.items():
        mount_static(app, prefix, directory)
    if keys:
        open_paths = OPEN_PATHS | {"/metrics"} if settings.metrics_open else OPEN_PATHS
        app.add_middleware(
            ApiKeyMiddleware,
            keys=KeyRing(keys),
            open_paths=open_paths | set(served),
            open_prefixes=[f"{prefix}/" for prefix in served],
        )
    origins = settings.cors_origin_values()
    if origins:
        app.add_middleware(JsonCORSMiddleware, origins=origins)
    # Added last, outermost: every answer (a 401 too) gets a request id, a log line and metrics.
    templates = route_templates([*app.router.routes, *(route for router in own for route in router.routes)])
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=app.state.metrics,
        log_format=settings.log_format,
        access_log_enabled=settings.access_log,
        templates=templates,
    )
    return app


def mount_static(app: FastAPI, prefix: str, directory: Path) -> None:
    """Serve ``directory`` under ``prefix/`` (``index.html`` for the directory itself).

    ``prefix`` without its slash redirects to ``prefix/`` with a relative ``Location`` (and the
    query string kept), so it also works behind a proxy that serves the app under a path.
    """
    if not prefix.startswith("/") or prefix == "/":
        raise ValueError(f"a static prefix is a path below the root such as /demo, not {prefix!r}")
    name = prefix.rsplit("/", 1)[-1]

    async def to_directory(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse(f"{name}/" + (f"?{query}" if query else ""), status_code=307)

    app.add_route(prefix, to_directory, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(prefix, StaticFiles(directory=directory, html=True), name=name)


def _service_name(settings: ServiceSettings, title: str) -> str:
    """``sender`` for ``LATENTWIRE_SENDER_`` settings; else the title's last word."""
    prefix = type(settings).service_prefix.removeprefix("LATENTWIRE_").rstrip("_").lower()
    return prefix or title.split()[-1].lower()


def serve(
    *, half: str, settings: ServiceSettings, load: Callable[[], LadderT], app: Callable[[LadderT], FastAPI]
) -> int:
    """Load the models before binding the port (a bad checkpoint fails fast and clearly), then serve."""
    configure_logging(settings.log_format, settings.log_level)
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
        log_format=settings.log_format,
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
