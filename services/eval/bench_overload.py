"""latentwire-bench's overload section: many clients POST huge images to the sender at once.

64 client threads each send, over and over, a ~10 MB 4000×4000 PNG (a digit on noisy paper: the
noise keeps PNG from compressing it) or a ~10 MB BMP to ``/encode`` for D seconds. Meanwhile a
process of its own (so the load threads cannot delay it on the GIL) polls ``GET /healthz`` every
50 ms, from before the first upload until the last answer, and a thread samples the sender's RSS
every 100 ms. The same two bytes objects serve every request, so the client's own memory stays
small; the server is the bottleneck.

What a healthy service shows: 200s and 503s only (each 503 with ``Retry-After`` and the JSON error
body), /healthz still answering in milliseconds, and a bounded RSS that falls back after the load.
"""

from __future__ import annotations

import io
import math
import queue
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import httpx
import numpy as np
from PIL import Image

from latentwire_eval.bench_http import BenchError, read_memory
from latentwire_eval.bench_report import Table

__all__ = ["HealthStats", "OverloadResult", "noisy_page", "overload_bodies", "overload_table", "run_overload"]

TARGET_BYTES = 10_000_000  # "a 10 MB upload"; below the sender's default 10 MiB body limit


def noisy_page(digit: np.ndarray, *, height: int, width: int, noise: int, seed: int = 0) -> np.ndarray:
    """A grayscale page: light paper with uniform noise of ``noise`` levels and a big dark digit."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width), 200, np.int16)
    page += rng.integers(0, max(1, noise), (height, width), dtype=np.int16)
    side = min(height, width) * 3 // 4
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.int16)
    top, left = (height - side) // 2, (width - side) // 2
    page[top : top + side, left : left + side] -= ink * 180 // 255
    return np.clip(page, 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def overload_bodies(
    digit: np.ndarray, *, target_bytes: int = TARGET_BYTES, side: int = 4000
) -> dict[str, tuple[bytes, str]]:
    """A ``side``² noisy PNG and a grayscale BMP, each just under ``target_bytes``: name → (body, type)."""
    png = b""
    for noise in (18, 14, 10, 6, 2):  # less noise, smaller PNG; the first that fits wins
        png = _encode(noisy_page(digit, height=side, width=side, noise=noise), "PNG")
        if len(png) <= target_bytes:
            break
    bmp_side = math.isqrt(max(0, target_bytes - 2048)) // 4 * 4  # 8-bit rows, padded to 4 bytes
    bmp = _encode(noisy_page(digit, height=bmp_side, width=bmp_side, noise=18), "BMP")
    return {
        f"PNG {side}×{side}": (png, "image/png"),
        f"BMP {bmp_side}×{bmp_side}": (bmp, "image/bmp"),
    }


# --------------------------------------------------------------------------- /healthz poller


def poll_health(
    url: str, *, interval_s: float, timeout_s: float, until: Callable[[], bool]
) -> tuple[list[float], int]:
    """GET ``url`` every ``interval_s`` until ``until()``: latencies (ms) of the 200s, and the failures."""
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=timeout_s) as client:
        while not until():
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.perf_counter() - started
            if ok:
                latencies.append(elapsed * 1000)
            else:
                failures += 1
            time.sleep(max(0.0, interval_s - elapsed))
    return latencies, failures


def _poller_process(url: str, interval_s: float, max_s: float, ready: Any, stop: Any, results: Any) -> None:
    """The body of the spawned poller: ready once imported, polls until ``stop`` (or ``max_s``)."""
    ready.set()
    cap = time.monotonic() + max_s
    results.put(
        poll_health(
            url, interval_s=interval_s, timeout_s=5.0, until=lambda: stop.is_set() or time.monotonic() > cap
        )
    )


class HealthPoller:
    """``poll_health`` in a spawned process, from ``start()`` (which waits until it runs) to ``finish()``."""

    def __init__(self, url: str, *, interval_s: float = 0.05, max_s: float = 600.0) -> None:
        ctx = get_context("spawn")
        self._ready, self._stop, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(
            target=_poller_process,
            args=(url, interval_s, max_s, self._ready, self._stop, self._results),
            daemon=True,
        )

    def start(self, timeout_s: float = 60.0) -> None:
        self._proc.start()
        if not self._ready.wait(timeout_s):
            self._proc.kill()
            raise BenchError("the /healthz poller process did not start")

    def finish(self, timeout_s: float = 30.0) -> tuple[list[float], int]:
        self._stop.set()
        try:
            latencies, failures = self._results.get(timeout=timeout_s)  # before join: the queue must drain
        except queue.Empty as exc:
            raise BenchError("the /healthz poller sent no results") from exc
        finally:
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
        return latencies, failures


@dataclass
class HealthStats:
    polls: int
    failures: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def health_stats(latencies: list[float], failures: int) -> HealthStats:
    if not latencies:
        return HealthStats(failures, failures, math.nan, math.nan, math.nan)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return HealthStats(len(ordered) + failures, failures, statistics.median(ordered), p99, ordered[-1])


# --------------------------------------------------------------------------- the load


@dataclass
class OverloadResult:
    clients: int
    duration_s: float
    load_s: float  # from the first upload to the last answer
    body_bytes: dict[str, int]
    #: per body: status code ("200", "503", "413"…) or transport error name → count
    outcomes: dict[str, dict[str, int]]
    answers_503: int
    retry_after_missing: int
    json_body_missing: int
    p50_200_ms: float  # latency of the requests answered 200
    healthz: HealthStats
    rss_before_mib: float
    rss_peak_mib: float  # the highest 100 ms sample during the load
    hwm_mib: float  # VmHWM after the load: the kernel's own peak
    settle_s: float
    rss_after_mib: float
    alive_after: bool
    aborted: str | None = None
    samples: int = 0  # RSS samples taken


class _Tally:
    """What the client threads record, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[str, Counter[str]] = {}
        self.ok_latencies: list[float] = []
        self.answers_503 = self.retry_after_missing = self.json_body_missing = 0

    def record(self, body: str, response: httpx.Response | None, error: str | None, seconds: float) -> None:
        with self.lock:
            outcome = str(response.status_code) if response is not None else str(error)
            self.outcomes.setdefault(body, Counter())[outcome] += 1
            if response is None:
                return
            if response.status_code == 200:
                self.ok_latencies.append(seconds * 1000)
            elif response.status_code == 503:
                self.answers_503 += 1
                self.retry_after_missing += "retry-after" not in response.headers
                self.json_body_missing += not _is_error_json(response)


def _is_error_json(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body and "detail" in body


def _client(
    url: str,
    name: str,
    body: bytes,
    content_type: str,
    deadline: float,
    stop: threading.Event,
    tally: _Tally,
    timeout_s: float,
) -> None:
    headers = {"Content-Type": content_type, "Accept": "application/octet-stream"}
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
        while time.monotonic() < deadline and not stop.is_set():
            started = time.perf_counter()
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:  # e.g. the server answered early and closed mid-upload
                tally.record(name, None, type(exc).__name__, time.perf_counter() - started)
                time.sleep(0.01)
                continue
            tally.record(name, response, None, time.perf_counter() - started)
            if response.status_code == 503:  # a polite client backs off a little (not all of Retry-After)
                time.sleep(0.05)


def _rss_mib(pid: int) -> float:
    try:
        return read_memory(pid).rss_mib
    except BenchError:  # the service died: the result says so (alive_after) rather than failing
        return math.nan


def _hwm_mib(pid: int) -> float:
    try:
        return read_memory(pid).hwm_mib
    except BenchError:
        return math.nan


def _sample_rss(
    pid: int, stop: threading.Event, cap_mib: float, abort: threading.Event, out: list[float]
) -> None:
    while not stop.wait(0.1):
        try:
            rss = read_memory(pid).rss_mib
        except BenchError:
            return  # the service died; the caller finds out
        out.append(rss)
        if rss > cap_mib:
            abort.set()  # this machine is shared: stop the load before the service eats it
            return


def run_overload(
    sender_url: str,
    pid: int,
    bodies: dict[str, tuple[bytes, str]],
    *,
    clients: int = 64,
    duration_s: float = 30.0,
    settle_s: float = 30.0,
    rss_cap_mib: float = 8192.0,
    request_timeout_s: float = 60.0,
) -> OverloadResult:
    before = read_memory(pid).rss_mib
    tally, stop_load, stop_sampler = _Tally(), threading.Event(), threading.Event()
    samples: list[float] = []
    names = list(bodies)
    health = HealthPoller(sender_url + "/healthz", max_s=duration_s + request_timeout_s + 120)
    health.start()
    deadline = time.monotonic() + duration_s
    sampler = threading.Thread(
        target=_sample_rss, args=(pid, stop_sampler, rss_cap_mib, stop_load, samples), daemon=True
    )
    sampler.start()
    threads = [
        threading.Thread(
            target=_client,
            args=(
                sender_url + "/encode",
                names[i % len(names)],
                *bodies[names[i % len(names)]],
                deadline,
                stop_load,
                tally,
                request_timeout_s,
            ),
            daemon=True,
        )
        for i in range(clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    join_until = deadline + request_timeout_s + 15  # bounded: the deadline, then one request timeout
    for t in threads:
        t.join(timeout=max(0.0, join_until - time.monotonic()))
    load_s = time.monotonic() - started  # longer than duration_s: the last uploads still get answered
    stop_sampler.set()
    sampler.join(timeout=5)
    latencies, failures = health.finish()
    hwm = _hwm_mib(pid)
    time.sleep(settle_s)
    try:
        alive = httpx.get(sender_url + "/healthz", timeout=10.0).status_code == 200
    except httpx.HTTPError:
        alive = False
    return OverloadResult(
        clients=clients,
        duration_s=duration_s,
        load_s=load_s,
        body_bytes={name: len(body) for name, (body, _) in bodies.items()},
        outcomes={name: dict(counts) for name, counts in tally.outcomes.items()},
        answers_503=tally.answers_503,
        retry_after_missing=tally.retry_after_missing,
        json_body_missing=tally.json_body_missing,
        p50_200_ms=statistics.median(tally.ok_latencies) if tally.ok_latencies else math.nan,
        healthz=health_stats(latencies, failures),
        rss_before_mib=before,
        rss_peak_mib=max(samples, default=math.nan),
        hwm_mib=hwm,
        settle_s=settle_s,
        rss_after_mib=_rss_mib(pid),
        alive_after=alive,
        aborted=f"sender RSS over {rss_cap_mib:.0f} MiB: load stopped early" if stop_load.is_set() else None,
        samples=len(samples),
    )


def overload_table(result: OverloadResult) -> list[Table]:
    statuses = sorted({k for counts in result.outcomes.values() for k in counts} - {"200", "503"})
    rows: list[list[str | int | float | None]] = [
        [
            name,
            result.body_bytes[name],
            counts.get("200", 0),
            counts.get("503", 0),
            ", ".join(f"{k}: {counts[k]}" for k in statuses if k in counts) or "0",
        ]
        for name, counts in sorted(result.outcomes.items())
    ]
    ok_503 = result.answers_503 - max(result.retry_after_missing, result.json_body_missing)
    h = result.healthz
    summary: list[list[str | int | float | None]] = [
        ["503 with Retry-After and JSON error body", f"{ok_503} of {result.answers_503}"],
        ["/encode p50 of the 200s, ms", result.p50_200_ms],
        [
            f"/healthz p50 / p99 / max ms ({h.polls} polls, {h.failures} failed)",
            f"{h.p50_ms:,.1f} / {h.p99_ms:,.1f} / {h.max_ms:,.1f}",
        ],
        [
            "sender RSS before → peak sampled (VmHWM), MiB",
            f"{result.rss_before_mib:,.0f} → {result.rss_peak_mib:,.0f} ({result.hwm_mib:,.0f})",
        ],
        [f"sender RSS {result.settle_s:g} s after the load, MiB", result.rss_after_mib],
        ["sender alive after", "yes" if result.alive_after else "**no**"],
    ]
    notes = [
        f"{result.clients} clients uploading for {result.duration_s:g} s (the last answer came at "
        f"{result.load_s:.1f} s), POST /encode with Accept: application/octet-stream."
    ]
    notes += [f"**{result.aborted}**"] if result.aborted else []
    return [
        Table("Overload: huge uploads to /encode", ["body", "bytes", "200", "503", "other"], rows, notes),
        Table("Overload: service health", ["measure", "value"], summary),
    ]
