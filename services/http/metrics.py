"""Prometheus metrics of one service, on ``GET /metrics`` (text exposition format).

Each app has its own registry (``app.state.metrics.registry``), never the process-global one,
so several apps in one process (the in-process tests) do not collide. What is measured:

====================================================  =================================================
``latentwire_http_requests_total``                    counter: requests by ``route``, ``method``, ``status``
``latentwire_http_request_duration_seconds``          histogram: latency by ``route``
``latentwire_http_rejected_total``                    counter: 503 ``overloaded`` refusals by ``route``
``latentwire_batch_size_items``                       histogram: items per forward pass
``latentwire_batch_duration_seconds``                 histogram: seconds per forward pass (with coding)
``latentwire_queue_pending_items``                    gauge: items admitted and not finished (at scrape)
``latentwire_queue_capacity_items``                   gauge: ``max_pending``
``latentwire_model_info``                             info: ``level``, ``denoise``, ``model_id`` per level
``latentwire_service_info``                           info: ``service``, ``version``
``latentwire_code_bytes``                             histogram: code sizes by ``level``, ``denoise``
====================================================  =================================================

Labels stay bounded: ``route`` is the route's template (``/encode``, never the raw path; a
path no route matches is ``unmatched``), ``method`` one of the HTTP methods or ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from latentwire import __version__

__all__ = [
    "UNMATCHED",
    "ServiceMetrics",
    "count_rejection",
    "instrument_batcher",
    "metrics_router",
    "observe_code_sizes",
    "route_label",
]

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Seconds: a small request takes ~1 ms, a large batch or a queue under load up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Bytes: ladder codes are ~6-30 bytes, the tutorial's v1 code 1,583.
CODE_BYTES_BUCKETS = (4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 48, 64, 128, 256, 1024, 2048)


class ServiceMetrics:
    """The metrics of one app, in a registry of its own."""

    def __init__(self, app: Any, *, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "latentwire_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "latentwire_http_request_duration_seconds",
            "Time from the request's arrival to its last response byte, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "latentwire_http_rejected",
            "Requests refused with 503 overloaded (queue or body budget full), by route template",
            ["route"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "latentwire_batch_size_items",
            "Items per forward pass of the micro-batcher",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_duration = Histogram(
            "latentwire_batch_duration_seconds",
            "Seconds per forward pass of the micro-batcher (network, entropy coding, PNGs)",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.code_bytes = Histogram(
            "latentwire_code_bytes",
            "Sizes of the codes made, framing included, by quality level",
            ["level", "denoise"],
            buckets=CODE_BYTES_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(app, service))
        # labels() takes a lock and builds a key on every call: the middleware keeps the children.
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (the middleware calls this once per request)."""
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """What is read at scrape time: the queue, the loaded models, the service."""

    def __init__(self, app: Any, service: str) -> None:
        self._app = app
        self._service = service

    def describe(self) -> Iterable[Any]:
        return []  # collected at scrape time only (the ladder may not be loaded at registration)

    def collect(self) -> Iterator[Any]:
        state = self._app.state
        batcher = getattr(state, "batcher", None)
        settings = getattr(state, "settings", None)
        yield GaugeMetricFamily(
            "latentwire_queue_pending_items",
            "Items admitted and not finished: queued, in the network, or still being read",
            value=batcher.pending if batcher is not None else 0,
        )
        if settings is not None:
            yield GaugeMetricFamily(
                "latentwire_queue_capacity_items",
                "Items admitted at once before requests get 503 (max_pending)",
                value=settings.max_pending,
            )
        service = InfoMetricFamily("latentwire_service", "The service and its version")
        service.add_metric([], {"service": self._service, "version": __version__})
        yield service
        models = InfoMetricFamily(
            "latentwire_model", "The loaded checkpoints: quality level, denoise, model id", labels=[]
        )
        ladder = getattr(state, "ladder", None)
        for model in ladder.levels() if ladder is not None else ():
            models.add_metric(
                [],
                {
                    "level": str(model.level),
                    "denoise": "true" if model.denoise else "false",
                    "model_id": model.model_id,
                },
            )
        yield models


# --------------------------------------------------------------------------- labels


def route_label(scope: Mapping[str, Any], templates: Sequence[tuple[re.Pattern[str], str]] = ()) -> str:
    """The template of the route that served ``scope`` (``/encode``), never the raw path.

    The router leaves the matched route in the scope; a request answered before routing (401)
    or by a route that does not (FastAPI's /docs, a mount of static files: its prefix) is matched
    against ``templates``; else ``unmatched``.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if templates:
        raw = scope.get("path", "")
        # A mount (the demo's static files) extends root_path by its prefix; app_root_path keeps the app's.
        root = scope.get("app_root_path", scope.get("root_path", ""))
        if root and raw.startswith(root):
            raw = raw[len(root) :]
        for regex, template in templates:
            if regex.match(raw):
                return template
    return UNMATCHED


def route_templates(routes: Iterable[Any]) -> list[tuple[re.Pattern[str], str]]:
    """(regex, template) of every route that has them (APIRoute, starlette's Route)."""
    return [
        (route.path_regex, route.path)
        for route in routes
        if isinstance(getattr(route, "path_regex", None), re.Pattern)
        and isinstance(getattr(route, "path", None), str)
    ]


# --------------------------------------------------------------------------- hooks


def observe_code_sizes(request: Request, level: int, sizes: Iterable[int], *, denoise: bool = False) -> None:
    """Record the sizes (bytes, framing included) of codes a request made at ``level``.

    The sender's routes call it with each answer's codes; an app without metrics ignores it.
    """
    metrics: ServiceMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return
    histogram = metrics.code_bytes.labels(str(level), "true" if denoise else "false")
    for size in sizes:
        histogram.observe(size)


def count_rejection(request: Request) -> None:
    """Count a 503 ``overloaded`` answer (the error handler calls it)."""
    metrics: ServiceMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.rejected.labels(route_label(request.scope)).inc()


def instrument_batcher(batcher: Any, metrics: ServiceMetrics) -> None:
    """Observe each forward pass's size and time (``MicroBatcher.on_pass``, on its worker thread;
    the metrics are thread-safe)."""
    size, duration = metrics.batch_size, metrics.batch_duration

    def observe(items: int, seconds: float) -> None:
        size.observe(items)
        duration.observe(seconds)

    batcher.on_pass = observe


def metrics_router() -> APIRouter:
    """``GET /metrics``: the app's metrics in Prometheus' text format."""
    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics: requests, latency, batches, queue, models, code sizes",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "text exposition format"}},
    )
    async def metrics(request: Request) -> Response:
        registry: ServiceMetrics = request.app.state.metrics
        return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

    return router
