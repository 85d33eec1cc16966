"""latentwire-bench's HTTP sections: service processes, wrk runs, the batched round trip, RSS.

Everything listens on 127.0.0.1 only, on ports the kernel hands out (bind port 0). Service output
goes to log files (a pipe nobody reads would fill and stall the service).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from latentwire_eval.bench_report import Table

__all__ = [
    "BatchResult",
    "BenchError",
    "HttpResult",
    "HttpRow",
    "MemoryRow",
    "ProcMemory",
    "Service",
    "WrkResult",
    "batch_round_trip",
    "batch_table",
    "check_status",
    "free_port",
    "http_table",
    "memory_table",
    "multipart_body",
    "parse_proc_status",
    "parse_wrk",
    "read_memory",
    "run_wrk",
    "wrk_script",
]

HOST = "127.0.0.1"
BATCH_MEDIA_TYPE = "application/x-latentwire-batch"


class BenchError(RuntimeError):
    """A measurement could not be made (a service down or answering errors, wrk missing…)."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback port free right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def console_script(name: str, module: str) -> list[str]:
    """The venv's console script beside this interpreter, else the same entry point through -c."""
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", f"import sys; from {module} import run; run()"]


@dataclass
class Service:
    """A server process on 127.0.0.1 with its log file; ``ready_path`` answers 200 once it can serve."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    ready_path: str = "/readyz"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, *, timeout_s: float = 120.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout_s)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise BenchError(
                        f"{self.name} exited with {self.proc.returncode} before it was ready; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if self._probe(client) == 200:
                        return
                time.sleep(0.1)
        raise BenchError(
            f"{self.name} not ready after {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def _probe(self, client: httpx.Client) -> int:
        if self.ready_path == "/echo":  # the echo app has one route, POST /echo
            return client.post(self.url + "/echo", content=b".").status_code
        return client.get(self.url + self.ready_path).status_code

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _service(name: str, checkpoint_flag: str, workdir: Path, models: Path | None) -> Service:
    port = free_port()
    argv = [
        *console_script(f"latentwire-{name}", f"latentwire_{name}.main"),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    argv += [checkpoint_flag, str(models)] if models is not None else []
    return Service(name, argv, port, workdir / f"{name}.log")


def sender(workdir: Path, models: Path | None) -> Service:
    return _service("sender", "--encoder", workdir, models)


def receiver(workdir: Path, models: Path | None) -> Service:
    return _service("receiver", "--decoder", workdir, models)


def echo(workdir: Path) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "latentwire_eval.echo", "--host", HOST, "--port", str(port)]
    return Service("echo", argv, port, workdir / "echo.log", ready_path="/echo")


@contextlib.contextmanager
def running(*services: Service, timeout_s: float = 120.0) -> Iterator[tuple[Service, ...]]:
    """Start the services (all, or none: a failure stops those already up) and stop them on exit."""
    try:
        for service in services:
            service.start(timeout_s=timeout_s)
        yield services
    finally:
        for service in services:
            service.stop()


# --------------------------------------------------------------------------- memory


@dataclass
class ProcMemory:
    rss_kib: int  # VmRSS: resident now
    hwm_kib: int  # VmHWM: the peak resident size so far

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def parse_proc_status(text: str) -> ProcMemory:
    """VmRSS and VmHWM (kB) from the text of /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if len(values) != 2:
        raise BenchError("no VmRSS/VmHWM in the process status (a kernel thread, or not Linux?)")
    return ProcMemory(rss_kib=values["VmRSS"], hwm_kib=values["VmHWM"])


def read_memory(pid: int) -> ProcMemory:
    try:
        return parse_proc_status(Path(f"/proc/{pid}/status").read_text())
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc}") from exc


@dataclass
class MemoryRow:
    service: str
    idle: ProcMemory
    loaded: ProcMemory | None = None


def memory_table(rows: Sequence[MemoryRow], *, after: str) -> Table:
    def mib(m: ProcMemory | None, peak: bool) -> float | None:
        return None if m is None else (m.hwm_mib if peak else m.rss_mib)

    return Table(
        title="Service memory (MiB)",
        columns=["service", "idle RSS", "idle peak", "RSS after load", "peak after load"],
        rows=[
            [r.service, mib(r.idle, False), mib(r.idle, True), mib(r.loaded, False), mib(r.loaded, True)]
            for r in rows
        ],
        notes=[f"VmRSS and VmHWM from /proc/<pid>/status, idle after startup and after {after}."],
    )


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    seconds: float
    output: str = ""  # wrk's own text, for whoever doubts a figure


_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise BenchError(f"unreadable wrk time {text!r}")
    return float(match[1]) * _TIME_UNITS_MS[match[2]]


def parse_wrk(text: str) -> WrkResult:
    """The figures of ``wrk --latency`` output: Requests/sec, the 50%/99% lines, error counts."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, text, re.MULTILINE)

    rate = find(r"^Requests/sec:\s+([\d.]+)")
    p50, p99 = find(r"^\s+50%\s+(\S+)"), find(r"^\s+99%\s+(\S+)")
    total = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    if rate is None or total is None:
        raise BenchError(f"unreadable wrk output:\n{text.strip()}")
    non_2xx = find(r"Non-2xx or 3xx responses:\s+(\d+)")
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkResult(
        requests_per_s=float(rate[1]),
        # no latency lines when nothing completed
        p50_ms=_ms(p50[1]) if p50 else float("nan"),
        p99_ms=_ms(p99[1]) if p99 else float("nan"),
        requests=int(total[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=errors or {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        seconds=_ms(total[2] + total[3]) / 1000,
        output=text.strip(),
    )


def _lua_string(text: str) -> str:
    """A Lua long-bracket literal (no escapes inside), with a level that ``text`` cannot close."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def wrk_script(body_path: Path, headers: dict[str, str], method: str = "POST") -> str:
    """A wrk Lua script sending the file's bytes as the body of every request."""
    lines = [f"wrk.method = {_lua_string(method)}"]
    # the spaces matter: t[[[k]]] would parse as a call of t with a long string
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    lines += [
        f'local f = assert(io.open({_lua_string(str(body_path))}, "rb"))',
        'wrk.body = f:read("*a")',
        "f:close()",
    ]
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str, script: Path, *, connections: int, duration_s: float, timeout_s: float = 10.0
) -> WrkResult:
    """One wrk run; wrk needs at least one connection per thread, so at most 2 threads."""
    threads = min(2, connections)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    except FileNotFoundError as exc:
        raise BenchError("wrk is not installed (apt-get install wrk)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    # wrk reports a broken Lua script on stderr and then runs plain GETs with exit status 0
    if done.returncode != 0 or done.stderr.strip():
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    result = parse_wrk(done.stdout)
    if result.requests and result.non_2xx == result.requests:
        raise BenchError(f"every request to {url} got a non-2xx answer:\n{done.stdout.strip()}")
    return result


def check_status(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """One request before the load: a service answering 4xx/5xx would make every figure meaningless."""
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise BenchError(f"POST {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise BenchError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
    return response


@dataclass
class HttpRow:
    target: str  # "echo", "/encode", "/decode"
    connections: int
    wrk: WrkResult
    pct_of_echo: float | None = None


@dataclass
class HttpResult:
    png_bytes: int
    code_bytes: int
    duration_s: float
    rows: list[HttpRow]


@dataclass
class WrkTarget:
    name: str
    url: str
    body: bytes
    headers: dict[str, str]


def bench_http(
    targets: Sequence[WrkTarget], workdir: Path, *, connections: Sequence[int], duration_s: float
) -> list[HttpRow]:
    """Each target at each connection count; the first target (the echo) is the 100% others compare to."""
    rows: list[HttpRow] = []
    for target in targets:
        check_status(target.url, target.body, target.headers)
        tag = uuid.uuid4().hex[:8]
        body_path, script_path = workdir / f"body-{tag}.bin", workdir / f"wrk-{tag}.lua"
        body_path.write_bytes(target.body)
        script_path.write_text(wrk_script(body_path, target.headers))
        for conns in connections:
            rows.append(
                HttpRow(
                    target.name,
                    conns,
                    run_wrk(target.url, script_path, connections=conns, duration_s=duration_s),
                )
            )
    baseline = {r.connections: r.wrk.requests_per_s for r in rows if r.target == targets[0].name}
    for row in rows:
        if row.target != targets[0].name and baseline.get(row.connections):
            row.pct_of_echo = 100 * row.wrk.requests_per_s / baseline[row.connections]
    return rows


def http_table(result: HttpResult) -> Table:
    rows: list[list[str | int | float | None]] = [
        [
            r.target,
            r.connections,
            r.wrk.requests_per_s,
            r.pct_of_echo,
            r.wrk.p50_ms,
            r.wrk.p99_ms,
            r.wrk.non_2xx + sum(r.wrk.socket_errors.values()),
        ]
        for r in result.rows
    ]
    return Table(
        title="HTTP, one image per request (wrk)",
        columns=["endpoint", "connections", "req/s", "% of echo", "p50 ms", "p99 ms", "errors"],
        rows=rows,
        notes=[
            f"Body: one {result.png_bytes}-byte MNIST PNG (echo, /encode), "
            f"its {result.code_bytes}-byte code (/decode). {result.duration_s:g} s per run. "
            "echo: a bare FastAPI route returning the body, same uvicorn options. "
            "errors: non-2xx answers plus socket errors."
        ],
    )


# --------------------------------------------------------------------------- batched round trip


def multipart_body(
    files: Sequence[bytes], *, field_name: str = "files", content_type: str = "image/png"
) -> tuple[bytes, str]:
    """A multipart/form-data body with ``field_name`` repeated, once per file, and its Content-Type."""
    boundary = f"latentwire-bench-{uuid.uuid4().hex}"
    parts = []
    for index, data in enumerate(files):
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{index}.png"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts += [head.encode("ascii"), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class BatchResult:
    images_per_request: int
    workers: int
    seconds: float
    round_trips: int
    images_per_s: float
    p50_round_trip_ms: float
    errors: int
    in_process_images_per_s: float | None = None  # the default level's compress + decompress, same batch
    pct_of_in_process: float | None = None


def _round_trip(
    client: httpx.Client, sender_url: str, receiver_url: str, body: bytes, content_type: str
) -> int:
    """Images decoded by one encode/batch → decode/batch trip; raises BenchError on any error status."""
    encoded = client.post(
        sender_url + "/encode/batch",
        content=body,
        headers={"Content-Type": content_type, "Accept": "application/octet-stream"},
    )
    if encoded.status_code != 200:
        raise BenchError(f"/encode/batch answered {encoded.status_code}: {encoded.text[:300]}")
    decoded = client.post(
        receiver_url + "/decode/batch", content=encoded.content, headers={"Content-Type": BATCH_MEDIA_TYPE}
    )
    if decoded.status_code != 200:
        raise BenchError(f"/decode/batch answered {decoded.status_code}: {decoded.text[:300]}")
    return len(decoded.json()["images"])


def batch_round_trip(
    sender_url: str, receiver_url: str, files: Sequence[bytes], *, workers: int, duration_s: float
) -> BatchResult:
    """``workers`` threads doing round trips of ``len(files)`` images for ``duration_s`` seconds."""
    body, content_type = multipart_body(files)
    with httpx.Client(timeout=60.0) as client:  # one checked trip first: fail loudly, not 0 img/s
        got = _round_trip(client, sender_url, receiver_url, body, content_type)
    if got != len(files):
        raise BenchError(f"sent {len(files)} images, the receiver returned {got}")
    lock = threading.Lock()
    trips: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        with httpx.Client(timeout=60.0) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    _round_trip(client, sender_url, receiver_url, body, content_type)
                except (BenchError, httpx.HTTPError, ValueError, KeyError) as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.05)  # a failing service must not turn this into a busy loop
                    continue
                with lock:
                    trips.append(time.perf_counter() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 130)
    seconds = time.monotonic() - started
    if not trips:
        raise BenchError(f"no batched round trip succeeded: {errors[:1]}")
    return BatchResult(
        images_per_request=len(files),
        workers=workers,
        seconds=seconds,
        round_trips=len(trips),
        images_per_s=len(trips) * len(files) / seconds,
        p50_round_trip_ms=statistics.median(trips) * 1000,
        errors=len(errors),
    )


def batch_table(result: BatchResult) -> Table:
    in_process = result.in_process_images_per_s
    return Table(
        title=f"Batched round trip over HTTP, {result.images_per_request} digits per request",
        columns=[
            "client workers",
            "images/s",
            "% of in process",
            "p50 round trip ms",
            "round trips",
            "errors",
        ],
        rows=[
            [
                result.workers,
                result.images_per_s,
                result.pct_of_in_process,
                result.p50_round_trip_ms,
                result.round_trips,
                result.errors,
            ]
        ],
        notes=[
            "POST /encode/batch (multipart PNGs, Accept: application/octet-stream) → POST /decode/batch "
            f"(the {BATCH_MEDIA_TYPE} container) → JSON of base64 PNGs. In process: compress then decompress"
            + (f", {in_process:,.0f} images/s." if in_process else " (not measured in this run).")
        ],
    )
