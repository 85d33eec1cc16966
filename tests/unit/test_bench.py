"""latentwire-bench: the wrk parser, the report, the RSS reader, a smoke run of the in-process sections."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import math
import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from latentwire.data import MnistSplit
from latentwire.preprocess import load_digit
from latentwire_eval import bench, bench_http, bench_inproc, bench_overload, echo
from latentwire_eval.bench_http import BenchError, WrkResult, parse_proc_status, parse_wrk
from latentwire_eval.bench_report import (
    Report,
    Table,
    cell,
    markdown_table,
    render_markdown,
    to_json,
    write_report,
)

# Real wrk 4.1.0 output (wrk -t1 -c1 -d2s --latency -s post.lua against the echo app).
WRK_OK = """\
Running 2s test @ http://127.0.0.1:18777/echo
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    81.99us  100.72us   3.15ms   99.16%
    Req/Sec    13.09k   161.29    13.30k    61.90%
  Latency Distribution
     50%   73.00us
     75%   74.00us
     90%   77.00us
     99%  156.00us
  27368 requests in 2.10s, 9.68MB read
Requests/sec:  13034.86
Transfer/sec:      4.61MB
"""

# Real: 8 connections to a route that does not exist (every answer a 404).
WRK_404 = """\
Running 2s test @ http://127.0.0.1:18777/nothere
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   421.05us  197.67us   4.45ms   94.13%
    Req/Sec     9.84k   682.83    11.36k    95.00%
  Latency Distribution
     50%  394.00us
     75%  408.00us
     90%  464.00us
     99%    1.20ms
  39145 requests in 2.00s, 5.11MB read
  Non-2xx or 3xx responses: 39145
Requests/sec:  19564.30
Transfer/sec:      2.56MB
"""

# Real /encode run at 64 connections, plus the socket-errors line in wrk's format (src/wrk.c).
WRK_ERRORS = """\
Running 2s test @ http://127.0.0.1:54043/encode
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   195.33ms   62.55ms 565.34ms   87.21%
    Req/Sec   169.57     49.47   270.00     75.68%
  Latency Distribution
     50%  180.69ms
     75%  201.06ms
     90%  235.16ms
     99%     1.50s
  640 requests in 2.02s, 171.25KB read
  Socket errors: connect 0, read 3, write 0, timeout 12
Requests/sec:    316.12
Transfer/sec:     84.59KB
"""

PROC_STATUS = """\
Name:\tpython
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1742012 kB
VmSize:\t 1676476 kB
VmHWM:\t  701124 kB
VmRSS:\t  480352 kB
RssAnon:\t  398812 kB
Threads:\t45
"""


# --------------------------------------------------------------------------- wrk


def test_parse_wrk_reads_rate_latency_and_counts() -> None:
    result = parse_wrk(WRK_OK)
    assert result.requests_per_s == pytest.approx(13034.86)
    assert result.p50_ms == pytest.approx(0.073)
    assert result.p99_ms == pytest.approx(0.156)
    assert result.requests == 27368
    assert result.seconds == pytest.approx(2.10)
    assert result.non_2xx == 0
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_parse_wrk_counts_non_2xx_answers() -> None:
    result = parse_wrk(WRK_404)
    assert result.non_2xx == result.requests == 39145
    assert result.p99_ms == pytest.approx(1.20)


def test_parse_wrk_reads_socket_errors_and_seconds() -> None:
    result = parse_wrk(WRK_ERRORS)
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 12}
    assert result.p50_ms == pytest.approx(180.69)
    assert result.p99_ms == pytest.approx(1500.0)


def test_parse_wrk_refuses_what_is_not_wrk_output() -> None:
    with pytest.raises(BenchError, match="unreadable wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_script_sets_method_headers_and_body_file(tmp_path: Path) -> None:
    body = tmp_path / "odd]]name.bin"
    script = bench_http.wrk_script(body, {"Content-Type": "image/png"})
    assert "wrk.method = [[POST]]" in script
    assert "wrk.headers[ [[Content-Type]] ] = [[image/png]]" in script  # not headers[[[…]]]: a Lua call
    assert f'io.open([=[{body}]=], "rb")' in script  # a long bracket the path cannot close
    assert 'wrk.body = f:read("*a")' in script


# --------------------------------------------------------------------------- report


def _report() -> Report:
    result = WrkResult(
        100.0, 1.5, float("nan"), 10, 0, {"connect": 0, "read": 0, "write": 0, "timeout": 0}, 1.0
    )
    table = Table(
        "HTTP",
        ["endpoint", "req/s", "p99 ms"],
        [["/encode", 12345.6, None], ["/decode", 7.25, 3.0]],
        ["a note"],
    )
    return Report(
        header={"machine": "2 CPUs", "command": "latentwire-bench --quick"},
        results={"http": result, "round_trip": 512.0},
        tables=[table],
        errors={"overload": "BenchError: sender exited\nTraceback line"},
    )


def test_cell_formats_by_magnitude() -> None:
    assert cell(12345.6) == "12,346"
    assert cell(42.25) == "42.2"
    assert cell(1.234) == "1.23"
    assert cell(4096) == "4,096"
    assert cell(None) == cell(float("nan")) == "–"
    assert cell("q4 (v2)") == "q4 (v2)"


def test_markdown_table_aligns_numbers_right_and_text_left() -> None:
    lines = markdown_table(_report().tables[0]).splitlines()
    assert lines[0] == "### HTTP"
    assert lines[2] == "| endpoint |  req/s | p99 ms |"
    assert lines[3] == "|----------|-------:|-------:|"
    assert lines[4] == "| /encode  | 12,346 |      – |"
    assert lines[5] == "| /decode  |   7.25 |   3.00 |"
    assert lines[-1] == "a note"
    assert {len(line) for line in lines[2:6]} == {len(lines[2])}


def test_render_markdown_has_header_tables_and_one_line_errors() -> None:
    text = render_markdown(_report())
    assert text.startswith("## latentwire-bench\n\n- machine: 2 CPUs\n- command: latentwire-bench --quick\n")
    assert "### HTTP" in text
    assert "- **overload**: BenchError: sender exited\n" in text
    assert "Traceback line" not in text  # the log tail stays in the JSON


def test_json_shape_is_plain_and_strict(tmp_path: Path) -> None:
    data = to_json(_report())
    assert set(data) == {"header", "results", "errors"}
    assert data["results"]["http"]["requests_per_s"] == 100.0
    assert data["results"]["http"]["p99_ms"] is None  # NaN is not JSON
    assert data["results"]["round_trip"] == 512.0
    md, js = write_report(_report(), tmp_path / "out")
    assert json.loads(js.read_text()) == data
    assert md.read_text() == render_markdown(_report())


# --------------------------------------------------------------------------- memory


def test_parse_proc_status_reads_rss_and_peak() -> None:
    memory = parse_proc_status(PROC_STATUS)
    assert (memory.rss_kib, memory.hwm_kib) == (480352, 701124)
    assert memory.rss_mib == pytest.approx(469.09, abs=0.01)


def test_parse_proc_status_without_memory_lines_raises() -> None:
    with pytest.raises(BenchError):
        parse_proc_status("Name:\tkthreadd\nState:\tS (sleeping)\n")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_read_memory_of_this_process() -> None:
    memory = bench_http.read_memory(os.getpid())
    assert 0 < memory.rss_kib <= memory.hwm_kib


def test_read_memory_of_a_missing_process_raises() -> None:
    with pytest.raises(BenchError):
        bench_http.read_memory(2**22 + 12345)  # above the kernel's pid_max


# --------------------------------------------------------------------------- request bodies and helpers


def test_multipart_body_repeats_the_field() -> None:
    body, content_type = bench_http.multipart_body([b"\x89PNG one", b"\x89PNG two"])
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    parts = list(message.iter_parts())
    assert [p.get_param("name", header="content-disposition") for p in parts] == ["files", "files"]
    assert [p.get_content() for p in parts] == [b"\x89PNG one", b"\x89PNG two"]


def test_health_stats_percentiles() -> None:
    stats = bench_overload.health_stats([float(v) for v in range(1, 101)], failures=2)
    assert (stats.polls, stats.failures, stats.p50_ms, stats.p99_ms, stats.max_ms) == (
        102,
        2,
        50.5,
        99.0,
        100.0,
    )
    assert math.isnan(bench_overload.health_stats([], failures=3).p50_ms)


def test_synthetic_uploads_are_digits_of_the_requested_size(mnist_test: MnistSplit) -> None:
    digit = mnist_test.images[0]
    bodies = bench_overload.overload_bodies(digit, target_bytes=300_000, side=400)
    assert [kind for _, kind in bodies.values()] == ["image/png", "image/bmp"]
    for data, _ in bodies.values():
        assert len(data) <= 300_000
        assert load_digit(data).max() > 100  # the service finds the digit: a 200, not a 422
    photo = bench_inproc.phone_photo(digit, width=400, height=300)
    assert photo[:2] == b"\xff\xd8" and load_digit(photo).max() > 100


def test_echo_returns_the_body() -> None:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=echo.create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://echo") as client:
            return await client.post("/echo", content=b"\x89PNG body", headers={"Content-Type": "image/png"})

    response = asyncio.run(post())
    assert response.status_code == 200 and response.content == b"\x89PNG body"


def test_options_quick_defaults_and_overrides() -> None:
    quick = bench.resolve(bench.build_parser().parse_args(["--quick", "--duration", "7", "--no-overload"]))
    assert quick.duration_s == 7 and quick.budget_s == 0.2 and quick.overload_duration_s == 5
    assert "overload" not in quick.sections
    full = bench.resolve(bench.build_parser().parse_args(["--sections", "networks,codec"]))
    assert full.sections == ["codec", "networks"] and full.duration_s == 10 and full.connections == [1, 8, 64]
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--sections", "codec,gpu"])


# --------------------------------------------------------------------------- runs


def test_smoke_in_process_sections(
    mnist_test: MnistSplit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--sections", "codec,networks", "--quick", "--images", "8", "--batch", "4", "--budget", "0.01"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "### Codec in process (images/s)" in printed and "decompress ×4" in printed
    assert "### Networks alone, q4, batches of 4 (images/s)" in printed
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["errors"] == {}
    assert data["header"]["command"] == "latentwire-bench " + " ".join([*argv, "--out", str(tmp_path)])
    codec = data["results"]["codec"]
    assert codec["batch"] == 4 and codec["round_trip_batch"] > 0
    assert {row["model"] for row in codec["rows"]} >= {"q4 (v7)"}
    assert all(row["compress_b1"] > 0 and row["decompress_batch"] > 0 for row in codec["rows"])
    assert data["results"]["networks"]["encoder"] > 0
    assert (tmp_path / "bench.md").read_text() == printed


def require_wrk() -> None:
    """Skip without wrk, or fail under CI=true: CI installs it (scripts/ci/test-tools.sh)."""
    if shutil.which("wrk") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install wrk (scripts/ci/test-tools.sh)", pytrace=False)
        pytest.skip("wrk is not installed (apt-get install wrk)")


def test_wrk_against_the_echo_process(tmp_path: Path) -> None:
    require_wrk()
    service = bench_http.echo(tmp_path)
    target = bench_http.WrkTarget("echo", service.url + "/echo", b"digit", {"Content-Type": "image/png"})
    with bench_http.running(service):
        rows = bench_http.bench_http([target], tmp_path, connections=[2], duration_s=1)
        assert bench_http.read_memory(service.pid).rss_kib > 0
    assert service.proc is not None and service.proc.returncode is not None  # stopped
    assert rows[0].wrk.requests > 0 and rows[0].wrk.non_2xx == 0


def test_a_service_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('no models here'); sys.exit(3)"]
    service = bench_http.Service("sender", argv, bench_http.free_port(), tmp_path / "sender.log")
    with pytest.raises(BenchError, match=r"(?s)exited with 3.*no models here"), bench_http.running(service):
        pass


# --------------------------------------------------------------------------- latentwire-bench-scaling


def test_scaling_ratios_compare_each_row_with_its_fewest_replicas() -> None:
    from latentwire_eval.bench_scaling import ScalingResult, ScalingRow, scaling_table, with_ratios

    rows = with_ratios(
        [
            ScalingRow(1, "/encode", 8, 1000.0, 7.0, 9.0, 0),
            ScalingRow(1, "/decode", 8, 800.0, 7.0, 9.0, 0),
            ScalingRow(2, "/encode", 8, 1500.0, 5.0, 8.0, 0),
            ScalingRow(2, "/decode", 8, 800.0, 7.0, 9.0, 3),
            ScalingRow(2, "/decode", 64, 900.0, 7.0, 9.0, 0),  # no 1-replica row to compare with
        ]
    )
    assert [r.x_one_replica for r in rows] == [1.0, 1.0, 1.5, 1.0, None]
    table = scaling_table(ScalingResult(header={"machine": "test"}, rows=rows))
    assert table.rows[2][:5] == [2, "/encode", 8, 1500.0, 1.5]
    assert "machine: test" in table.notes[0]


def test_scaling_cli_refuses_bad_arguments(tmp_path: Path) -> None:
    from latentwire_eval.bench_scaling import build_parser, run

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--replicas", "0,2"])
    with pytest.raises(SystemExit, match="no compose file"):
        run(["--compose-file", str(tmp_path / "missing.yml")])
