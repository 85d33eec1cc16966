"""Running a service: the thread budget, then uvicorn with the options every service (and the
benchmark's echo baseline) shares."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from typing import Any

import uvicorn

__all__ = ["configure_threads", "run_app", "settle_garbage_collector", "uvicorn_options"]

log = logging.getLogger("latentwire.http")


def configure_threads(torch_threads: int) -> None:
    """torch's intra-op threads, and one inter-op thread: inference runs on one thread of ours.

    The two cores of a small machine are shared by the event loop (HTTP, JSON), image decoding
    threads and that inference thread; more intra-op threads than that only contend.
    """
    import torch  # here, not at import: the benchmark's echo server never loads torch

    torch.set_num_threads(torch_threads)
    # Only settable before the first parallel op; a second call raises, harmlessly.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def settle_garbage_collector() -> None:
    """Move what startup made (models, tables, modules) out of the collector's sight, and collect
    the young generation less often.

    Each full collection otherwise walks every object the models and libraries left behind, and
    under load those pauses were the latency tail: at 64 connections p99 of /encode went from
    ~108 ms to ~35-45 ms, and requests/s up ~20% (latentwire-bench, this machine).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)


def uvicorn_options(
    *, log_level: str = "info", graceful_timeout_s: float = 10.0, log_format: str = "text"
) -> dict[str, Any]:
    """uvicorn settings shared by the services and by latentwire-bench's echo baseline.

    "auto" picks uvloop and httptools when installed (the ``serve`` extra installs both). No
    uvicorn access log: the services log one line per request themselves
    (``latentwire_http.observability``), with the request id, route and level. With
    ``log_format="json"`` uvicorn configures no handlers of its own: its lines go to the root
    logger, which ``configure_logging`` made JSON.
    """
    options: dict[str, Any] = {
        "loop": "auto",
        "http": "auto",
        "access_log": False,
        "log_level": log_level,
        "timeout_graceful_shutdown": graceful_timeout_s,
        "server_header": False,
    }
    if log_format == "json":
        options["log_config"] = None
    return options


def run_app(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    graceful_timeout_s: float = 10.0,
    log_format: str = "text",
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (in-flight requests get ``graceful_timeout_s`` to finish).

    A SIGTERM ends in a clean exit (status 0): uvicorn raises the signal it caught again once it
    has drained, and the default action would kill the process with status 143 after a shutdown
    that went fine. A no-op handler, restored afterwards, absorbs that second delivery.
    """
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            **uvicorn_options(
                log_level=log_level, graceful_timeout_s=graceful_timeout_s, log_format=log_format
            ),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
