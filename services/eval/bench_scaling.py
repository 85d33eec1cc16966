"""latentwire-bench-scaling: throughput through the gateway with 1, 2, … replicas of each service.

    latentwire-bench-scaling                          # replicas 1,2; 8 and 64 connections; ~2 min
    latentwire-bench-scaling --replicas 1,2,3 --duration 20 --out docs/results
    LATENTWIRE_BASE_IMAGE=latentwire-base:bookworm latentwire-bench-scaling   # CI's base image

For each replica count it runs the compose stack of docker-compose.yml as a project of its own
(``latentwire-bench-scaling``, on a free port) with ``--scale sender=N --scale receiver=N``, and
wrk (one MNIST PNG per request to /encode, its code to /decode) against the gateway's one port;
the gateway's own /healthz (nginx alone, no replica) is the ceiling. The project is taken down at
the end, whatever happened. Images are built first (``docker compose build``: a no-op when they are
current); ``--no-build`` uses them as they are.

wrk, the gateway and every replica share this machine's cores: the table shows where adding a
replica stops paying on it (docs/scaling.md), not what a cluster of machines would do.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from latentwire.data import load_mnist
from latentwire.preprocess import png_bytes
from latentwire_eval.bench import positive_ints
from latentwire_eval.bench_http import BenchError, WrkTarget, bench_http, check_status, free_port
from latentwire_eval.bench_report import Table, markdown_table

__all__ = ["ScalingRow", "run", "scaling_table"]

PROJECT = "latentwire-bench-scaling"
SERVICES = ("sender", "receiver")


@dataclass
class ScalingRow:
    replicas: int
    endpoint: str  # "gateway /healthz", "/encode", "/decode"
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    x_one_replica: float | None = None  # requests_per_s / the same row's at 1 replica


@dataclass
class ScalingResult:
    header: dict[str, str]
    rows: list[ScalingRow] = field(default_factory=list)


def scaling_table(result: ScalingResult) -> Table:
    return Table(
        title="Through the gateway, by replicas of each service (wrk)",
        columns=["replicas", "endpoint", "connections", "req/s", "× 1 replica", "p50 ms", "p99 ms", "errors"],
        rows=[
            [
                r.replicas,
                r.endpoint,
                r.connections,
                r.requests_per_s,
                r.x_one_replica,
                r.p50_ms,
                r.p99_ms,
                r.errors,
            ]
            for r in result.rows
        ],
        notes=[
            "One MNIST PNG per /encode request, its code per /decode request; `gateway /healthz` is "
            "nginx answering by itself (the ceiling of the front door). errors: non-2xx answers plus "
            "socket errors. " + ", ".join(f"{k}: {v}" for k, v in result.header.items())
        ],
    )


def with_ratios(rows: Sequence[ScalingRow]) -> list[ScalingRow]:
    """Each row's throughput against the same endpoint and connections at the fewest replicas."""
    fewest = min((r.replicas for r in rows), default=1)
    base = {(r.endpoint, r.connections): r.requests_per_s for r in rows if r.replicas == fewest}
    for row in rows:
        reference = base.get((row.endpoint, row.connections))
        row.x_one_replica = row.requests_per_s / reference if reference else None
    return list(rows)


class Stack:
    """The compose project the bench runs, on its own free gateway port."""

    def __init__(self, compose_file: Path) -> None:
        self.compose_file = compose_file
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LATENTWIRE_", "COMPOSE_"))},
            "LATENTWIRE_GATEWAY_PORT": str(self.port),
        }
        for name in ("LATENTWIRE_BASE_IMAGE", "LATENTWIRE_TORCH_INDEX_URL", "LATENTWIRE_TAG"):
            if name in os.environ:
                self.env[name] = os.environ[name]
        self.url = f"http://127.0.0.1:{self.port}"

    def __call__(self, *args: str, timeout: float = 600) -> str:
        cmd = ["docker", "compose", "-f", str(self.compose_file), "-p", PROJECT, *args]
        try:
            done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise BenchError("docker is not installed") from exc
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{' '.join(cmd)} did not finish in {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.strip()[-3000:]}")
        return done.stdout

    def scale(self, replicas: int) -> None:
        scaled = [arg for s in SERVICES for arg in ("--scale", f"{s}={replicas}")]
        self("up", "-d", "--wait", "--wait-timeout", "240", "--no-build", *scaled)
        self.wait_for_replicas(replicas)

    def wait_for_replicas(self, replicas: int, timeout_s: float = 60) -> None:
        """Until the gateway's upstream lists hold ``replicas`` addresses of each service."""
        deadline = time.monotonic() + timeout_s
        while True:
            upstreams = self("exec", "-T", "gateway", "cat", "/tmp/nginx/upstreams.conf", timeout=30)
            blocks = upstreams.split("upstream ")[1:]
            counts = [block.count("max_fails") for block in blocks]
            if len(counts) == len(SERVICES) and all(n == replicas for n in counts):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the gateway lists {counts} replicas, not {replicas} of each:\n{upstreams}")
            time.sleep(0.5)

    def down(self) -> None:
        self("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)


@contextmanager
def stack(compose_file: Path, *, build: bool) -> Iterator[Stack]:
    running = Stack(compose_file)
    if build:
        running("build", "--quiet", timeout=3600)
    try:
        yield running
    finally:
        running.down()


def measure(
    compose_file: Path,
    *,
    replicas: Sequence[int],
    connections: Sequence[int],
    duration_s: float,
    build: bool = True,
) -> ScalingResult:
    png = png_bytes(load_mnist("test").images[0])
    result = ScalingResult(
        header={
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "per run": f"{duration_s:g} s",
        }
    )
    with stack(compose_file, build=build) as running, tempfile.TemporaryDirectory() as tmp:
        for n in replicas:
            running.scale(n)
            code = check_status(
                running.url + "/encode",
                png,
                {"Content-Type": "image/png", "Accept": "application/octet-stream"},
            ).content
            httpx.get(running.url + "/healthz", timeout=10).raise_for_status()
            targets = [
                WrkTarget("gateway /healthz", running.url + "/healthz", b"", {}),
                WrkTarget("/encode", running.url + "/encode", png, {"Content-Type": "image/png"}),
                WrkTarget(
                    "/decode", running.url + "/decode", code, {"Content-Type": "application/octet-stream"}
                ),
            ]
            for row in bench_http(targets, Path(tmp), connections=connections, duration_s=duration_s):
                wrk = row.wrk
                errors = wrk.non_2xx + sum(wrk.socket_errors.values())
                result.rows.append(
                    ScalingRow(
                        n, row.target, row.connections, wrk.requests_per_s, wrk.p50_ms, wrk.p99_ms, errors
                    )
                )
    with_ratios(result.rows)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-bench-scaling",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Needs Docker (Compose v2) and wrk. See docs/scaling.md.",
    )
    p.add_argument(
        "--replicas", type=positive_ints, default=[1, 2], help="replica counts of each service (1,2)"
    )
    p.add_argument("--connections", type=positive_ints, default=[8, 64], help="wrk connection counts (8,64)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (10)")
    p.add_argument("--compose-file", type=Path, default=Path("docker-compose.yml"))
    p.add_argument("--no-build", action="store_true", help="use the images as they are")
    p.add_argument("--out", type=Path, help="write scaling.md and scaling.json here")
    return p


def run(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not args.compose_file.is_file():
        sys.exit(
            f"latentwire-bench-scaling: no compose file at {args.compose_file}"
            " (run it from the repository root)"
        )
    try:
        result = measure(
            args.compose_file.resolve(),
            replicas=args.replicas,
            connections=args.connections,
            duration_s=args.duration,
            build=not args.no_build,
        )
    except BenchError as exc:
        sys.exit(f"latentwire-bench-scaling: {exc}")
    text = "## latentwire-bench-scaling\n\n" + markdown_table(scaling_table(result)) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scaling.md").write_text(text, encoding="utf-8")
        payload = {"header": result.header, "rows": [asdict(r) for r in result.rows]}
        (args.out / "scaling.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run()
