"""latentwire-bench: the codec in process, the networks alone, and both services over HTTP, in one run.

    latentwire-bench                                  # everything (~5 min on 2 cores), prints markdown
    latentwire-bench --out runs/bench                 # also writes runs/bench/bench.md and bench.json
    latentwire-bench --quick                          # a smoke run: short durations (~1 min)
    latentwire-bench --sections codec,networks        # in process only (no services, no wrk)
    latentwire-bench --no-overload --duration 5 --connections 1,8
    python -m latentwire_eval.bench --models runs/ladder

Sections (``--sections``, comma-separated; default all):

- ``codec``: compress / decompress images/s per ladder level at batch 1 and 256, and the default
  level's in-process round trip (the 100% of the batched HTTP round trip);
- ``networks``: the default level's encoder and decoder forward passes alone;
- ``preprocess``: ``load_digit`` on a 4000×3000 phone-photo JPEG;
- ``http``: wrk on POST /encode and /decode, one image per request, at 1, 8, 64 connections, next to
  a bare FastAPI echo served with the same uvicorn options (the HTTP ceiling);
- ``batch``: 256 digits per request through /encode/batch and /decode/batch;
- ``memory``: each service's RSS idle and after the http and batch sections;
- ``overload``: 64 clients uploading ~10 MB images to /encode (``--no-overload`` skips it).

The bench starts the sender, the receiver and the echo (``python -m latentwire_eval.echo``) itself
on free 127.0.0.1 ports, waits for them to be ready and stops them at the end; their output goes to
log files in a temporary directory, kept when something failed. A failed section is listed under
"Errors", the others still run, and the exit status is 1. The in-process sections use torch's
default thread count (``--torch-threads 1`` matches the services' one inference thread).

Figures depend on the machine and on what else runs on it (wrk shares the cores with the services):
compare runs made on the same, quiet machine.

Modules: ``bench`` (this CLI), ``bench_inproc`` (codec, networks, preprocessing), ``bench_http``
(processes, wrk, the batched round trip, RSS), ``bench_overload``, ``bench_report`` (markdown, JSON),
``echo`` (the baseline app).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from latentwire.data import load_mnist
from latentwire.preprocess import png_bytes
from latentwire_eval import bench_http as web
from latentwire_eval import bench_inproc as inproc
from latentwire_eval import bench_overload as overload
from latentwire_eval.bench_report import Report, Table, render_markdown, write_report

__all__ = ["SECTIONS", "build_parser", "main", "positive_ints", "run"]

log = logging.getLogger("latentwire.bench")
R = TypeVar("R")

SECTIONS = ("codec", "networks", "preprocess", "http", "batch", "memory", "overload")
SERVICE_SECTIONS = frozenset({"http", "batch", "memory", "overload"})


# --------------------------------------------------------------------------- options


@dataclass
class Options:
    sections: list[str]
    models: Path | None
    out: Path | None
    images: int
    batch: int
    budget_s: float
    duration_s: float
    connections: list[int]
    batch_workers: int
    preprocess_runs: int
    overload_clients: int
    overload_duration_s: float
    overload_settle_s: float
    overload_rss_cap_mib: float


# (full run, --quick) for every option left unset on the command line
_DEFAULTS: dict[str, tuple[float, float]] = {
    "images": (2048, 512),
    "budget": (1.0, 0.2),
    "duration": (10, 2),
    "preprocess_runs": (10, 3),
    "overload_duration": (30, 5),
    "overload_settle": (30, 3),
}


def positive_ints(text: str) -> list[int]:
    """An argparse type: comma-separated positive integers (``1,8,64``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def _sections(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in names]  # run order is fixed: in process first, overload last


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latentwire-bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sections", type=_sections, default=list(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    p.add_argument("--no-overload", action="store_true", help="skip the overload section")
    p.add_argument("--quick", action="store_true", help="short durations, fewer digits: a smoke run")
    p.add_argument(
        "--models", type=Path, help="ladder directory for both services (default: the shipped one)"
    )
    p.add_argument("--out", type=Path, help="write bench.md and bench.json here")
    p.add_argument("--duration", type=float, help="seconds per wrk run and of the batched round trip (10)")
    p.add_argument(
        "--connections", type=positive_ints, default=[1, 8, 64], help="wrk connection counts (1,8,64)"
    )
    p.add_argument("--images", type=int, help="MNIST test digits for the in-process sections (2048)")
    p.add_argument("--batch", type=int, default=256, help="digits per batch, in process and over HTTP (256)")
    p.add_argument("--budget", type=float, help="seconds per in-process figure (1.0)")
    p.add_argument(
        "--batch-workers", type=int, default=4, help="client threads of the batched round trip (4)"
    )
    p.add_argument("--preprocess-runs", type=int, help="load_digit calls timed on the phone photo (10)")
    p.add_argument("--overload-clients", type=int, default=64)
    p.add_argument("--overload-duration", type=float, help="seconds of overload (30)")
    p.add_argument(
        "--overload-settle", type=float, help="seconds after the overload before RSS is read again (30)"
    )
    p.add_argument(
        "--overload-rss-cap-mib",
        type=float,
        default=8192,
        help="stop the overload early above this sender RSS",
    )
    p.add_argument(
        "--torch-threads", type=int, help="torch intra-op threads, in-process sections (torch's default)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def resolve(args: argparse.Namespace) -> Options:
    def pick(name: str) -> float:
        given = getattr(args, name)
        return float(given if given is not None else _DEFAULTS[name][1 if args.quick else 0])

    sections = [s for s in args.sections if not (args.no_overload and s == "overload")]
    return Options(
        sections=sections,
        models=args.models,
        out=args.out,
        images=max(1, int(pick("images"))),
        batch=max(1, args.batch),
        budget_s=pick("budget"),
        duration_s=pick("duration"),
        connections=args.connections,
        batch_workers=max(1, args.batch_workers),
        preprocess_runs=max(1, int(pick("preprocess_runs"))),
        overload_clients=max(1, args.overload_clients),
        overload_duration_s=pick("overload_duration"),
        overload_settle_s=pick("overload_settle"),
        overload_rss_cap_mib=args.overload_rss_cap_mib,
    )


# --------------------------------------------------------------------------- header


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_total_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return None


def git_revision() -> str:
    """The checkout's short commit, ``+dirty`` with uncommitted changes; '' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("+dirty" if dirty else "")


def header(argv: Sequence[str]) -> dict[str, Any]:
    import torch  # imported here: the light helpers of this module load no torch

    memory = memory_total_gib()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{nproc()} CPUs, {cpu_model()}" + (f", {memory:.0f} GiB RAM" if memory else ""),
        "python": f"{platform.python_version()} ({platform.machine()})",
        "torch": f"{torch.__version__}, {torch.get_num_threads()} intra-op threads in the bench process",
        "wrk": shutil.which("wrk") or "not installed",
        "revision": git_revision() or "unknown",
        "command": shlex.join(["latentwire-bench", *argv]),
    }


# --------------------------------------------------------------------------- sections


def run_section(
    report: Report, name: str, compute: Callable[[], R], tables: Callable[[R], list[Table]] = lambda _: []
) -> R | None:
    """Run one section; a failure is recorded (and makes the exit status 1) but the others still run."""
    log.info("· %s", name)
    try:
        result = compute()
        report.tables.extend(tables(result))
    except Exception as exc:  # a benchmark reports every section it can, and every failure
        report.errors[name] = f"{type(exc).__name__}: {exc}"
        log.error("%s failed: %s", name, report.errors[name])
        log.debug("traceback", exc_info=True)
        return None
    report.results[name] = result
    return result


def in_process_sections(report: Report, opts: Options, images: np.ndarray) -> None:
    models, batch, budget = opts.models, opts.batch, opts.budget_s
    if "codec" in opts.sections:
        run_section(
            report,
            "codec",
            lambda: inproc.bench_codec(images, models, batch=batch, budget_s=budget),
            inproc.codec_tables,
        )
    if "networks" in opts.sections:
        run_section(
            report,
            "networks",
            lambda: inproc.bench_networks(images, models, batch=batch, budget_s=budget),
            lambda r: [inproc.networks_table(r)],
        )
    if "batch" in opts.sections and "codec" not in report.results:  # the batched round trip's 100%
        run_section(
            report,
            "round_trip",
            lambda: inproc.in_process_round_trip(images, models, batch=batch, budget_s=budget),
        )
    if "preprocess" in opts.sections:
        run_section(
            report,
            "preprocess",
            lambda: inproc.bench_preprocess(images[0], runs=opts.preprocess_runs),
            lambda r: [inproc.preprocess_table(r)],
        )


def http_section(
    opts: Options, workdir: Path, send: web.Service, recv: web.Service, png: bytes
) -> web.HttpResult:
    code = web.check_status(
        send.url + "/encode", png, {"Content-Type": "image/png", "Accept": "application/octet-stream"}
    ).content
    echo = web.echo(workdir)
    targets = [
        web.WrkTarget("echo", echo.url + "/echo", png, {"Content-Type": "image/png"}),
        web.WrkTarget("/encode", send.url + "/encode", png, {"Content-Type": "image/png"}),
        web.WrkTarget("/decode", recv.url + "/decode", code, {"Content-Type": "application/octet-stream"}),
    ]
    with web.running(echo):
        rows = web.bench_http(targets, workdir, connections=opts.connections, duration_s=opts.duration_s)
    return web.HttpResult(png_bytes=len(png), code_bytes=len(code), duration_s=opts.duration_s, rows=rows)


def batch_section(
    report: Report, opts: Options, images: np.ndarray, send: web.Service, recv: web.Service
) -> web.BatchResult:
    files = [png_bytes(images[i % len(images)]) for i in range(opts.batch)]
    result = web.batch_round_trip(
        send.url, recv.url, files, workers=opts.batch_workers, duration_s=opts.duration_s
    )
    in_process = round_trip_baseline(report)
    if in_process:
        result.in_process_images_per_s = in_process
        result.pct_of_in_process = 100 * result.images_per_s / in_process
    return result


def round_trip_baseline(report: Report) -> float | None:
    """The in-process round trip the batched HTTP one is compared with (measured before the services)."""
    codec = report.results.get("codec")
    if isinstance(codec, inproc.CodecResult):
        return codec.round_trip_batch
    baseline = report.results.get("round_trip")
    return baseline if isinstance(baseline, float) else None


def service_sections(report: Report, opts: Options, images: np.ndarray, workdir: Path) -> None:
    send, recv = web.sender(workdir, opts.models), web.receiver(workdir, opts.models)
    log.info("· starting the sender and the receiver (logs in %s)", workdir)
    try:
        with web.running(send, recv):
            _with_services(report, opts, images, workdir, send, recv)
    except web.BenchError as exc:  # the services did not start: one error, the sections skipped
        report.errors["services"] = str(exc)
        for name in opts.sections:
            if name in SERVICE_SECTIONS and name not in report.results and name not in report.errors:
                report.errors[name] = "skipped: the services did not start"
        log.error("%s", exc)


def _with_services(
    report: Report, opts: Options, images: np.ndarray, workdir: Path, send: web.Service, recv: web.Service
) -> None:
    idle = {s.name: web.read_memory(s.pid) for s in (send, recv)}
    png = png_bytes(images[0])
    if "http" in opts.sections:
        run_section(
            report,
            "http",
            lambda: http_section(opts, workdir, send, recv, png),
            lambda r: [web.http_table(r)],
        )
    if "batch" in opts.sections:
        run_section(
            report,
            "batch",
            lambda: batch_section(report, opts, images, send, recv),
            lambda r: [web.batch_table(r)],
        )
    if "memory" in opts.sections:
        loads = [s for s in ("http", "batch") if s in report.results]
        after = "the " + " and ".join(loads) + " sections" if loads else "nothing (no load ran)"
        run_section(
            report,
            "memory",
            lambda: [web.MemoryRow(s.name, idle[s.name], web.read_memory(s.pid)) for s in (send, recv)],
            lambda rows: [web.memory_table(rows, after=after)],
        )
    if "overload" in opts.sections:
        run_section(
            report,
            "overload",
            lambda: overload.run_overload(
                send.url,
                send.pid,
                overload.overload_bodies(images[0]),
                clients=opts.overload_clients,
                duration_s=opts.overload_duration_s,
                settle_s=opts.overload_settle_s,
                rss_cap_mib=opts.overload_rss_cap_mib,
            ),
            overload.overload_table,
        )
    for service in (send, recv):  # a crash (an OOM kill under overload…) is a finding, not a detail
        if service.proc is not None and service.proc.poll() is not None:
            report.errors[service.name] = f"exited with {service.proc.returncode} during the run"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    opts = resolve(args)
    if args.torch_threads:  # the services set their own (latentwire_http.server.configure_threads)
        import torch

        torch.set_num_threads(args.torch_threads)
    report = Report(header=header(argv))
    log.info("%s · %s · torch %s", report.header["command"], report.header["machine"], report.header["torch"])
    images = load_mnist("test").images[: opts.images]
    in_process_sections(report, opts, images)
    if SERVICE_SECTIONS.intersection(opts.sections):
        workdir = Path(tempfile.mkdtemp(prefix="latentwire-bench-"))
        service_sections(report, opts, images, workdir)
        if report.errors:
            log.error("service logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render_markdown(report), end="")
    if opts.out is not None:
        md, js = write_report(report, opts.out)
        log.info("wrote %s and %s", md, js)
    return 1 if report.errors else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
