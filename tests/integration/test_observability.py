"""The `observability` profile: a Prometheus server (Debian's package, docker/Dockerfile target
`prometheus`) that scrapes GET /metrics of both services, asked through its own HTTP API on the
port compose publishes on 127.0.0.1.

The stack here is a project of its own (the profile adds a container the other tests do not
expect), taken down with `down -v` at the end of the test, whatever happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from latentwire.data import MnistSplit
from latentwire.preprocess import png_bytes
from tests.integration.conftest import Compose, free_port

pytestmark = pytest.mark.integration

PROFILE = "observability"
JOBS = {"sender": 8001, "receiver": 8002}  # Prometheus job -> the port it scrapes on each replica
REQUESTS_TOTAL = "latentwire_http_requests_total"
DIGITS = 5  # real MNIST test digits sent through POST /encode
TARGETS_UP_S = 60  # the first scrape comes within a scrape interval (2 s) of Prometheus' start
COUNTER_MOVES_S = 30  # a few scrape intervals, on a busy machine
NOTHING: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], tuple[bool, T]], deadline_s: float, logs: Callable[[], str]) -> T:
    """Call ``probe`` until it says done (every 0.5 s, at most ``deadline_s``); fail with its last word."""
    end = time.monotonic() + deadline_s
    while True:
        done, last = probe()
        if done:
            return last
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline_s:.0f} s; last seen:\n{last}\n{logs()}", pytrace=False)
        time.sleep(0.5)


@pytest.fixture(scope="module")
def observed(built: None, compose_projects: list[Compose]) -> Iterator[Compose]:
    """The sender, the receiver and Prometheus, healthy; `down -v` afterwards (checked to be clean)."""
    port = free_port()
    compose = Compose.new(LATENTWIRE_PROMETHEUS_PORT=str(port))
    compose.ports["prometheus"] = port
    compose_projects.append(compose)  # the session's teardown too, should this one not run
    compose.build("prometheus")  # the session built the default services only
    try:
        compose.up(PROFILE)
        yield compose
    finally:
        compose("--profile", PROFILE, "down", "-v", "--remove-orphans", "--timeout", "10", timeout=120)
    assert compose.leftovers() == NOTHING


@pytest.fixture(scope="module")
def prometheus(observed: Compose) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=observed.url("prometheus"), timeout=10) as client:
        yield client


def api(prometheus: httpx.Client, path: str, **params: str) -> Any:
    """``data`` of a Prometheus API answer (``status`` must be ``success``)."""
    response = prometheus.get(f"/api/v1/{path}", params=params)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    body = response.json()
    assert body.get("status") == "success", body
    return body["data"]


def scalar(prometheus: httpx.Client, query: str) -> float | None:
    """The value of a query that yields at most one series (None: no series yet)."""
    result = api(prometheus, "query", query=query)["result"]
    assert len(result) <= 1, (query, result)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_container_runs_as_configured(observed: Compose) -> None:
    """Non-root, read-only root file system, the TSDB on a tmpfs, init, port on loopback only."""
    attrs = observed.inspect("prometheus")
    assert attrs["Config"]["User"] not in ("", "0", "root", "0:0"), attrs["Config"]["User"]
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert "/prometheus" in (attrs["HostConfig"].get("Tmpfs") or {}), attrs["HostConfig"].get("Tmpfs")
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["HostConfig"]["CapDrop"] in (["ALL"], ["all"]), attrs["HostConfig"]["CapDrop"]
    assert attrs["State"]["Health"]["Status"] == "healthy"
    bindings = attrs["HostConfig"]["PortBindings"]["9090/tcp"]
    assert [(b["HostIp"], b["HostPort"]) for b in bindings] == [
        ("127.0.0.1", str(observed.ports["prometheus"]))
    ]
    # Debian's package, not a binary from elsewhere
    out = observed.exec("prometheus", "dpkg-query", "-W", "-f", "${Status} ${Version}", "prometheus").stdout
    assert out.decode().startswith("install ok installed "), out


def test_both_targets_up(prometheus: httpx.Client, observed: Compose) -> None:
    """GET /api/v1/targets: the sender and the receiver are scraped, and both are up."""

    def probe() -> tuple[bool, str]:
        targets = api(prometheus, "targets", state="active")["activeTargets"]
        seen = {t["labels"]["job"]: (t["health"], t["scrapeUrl"], t.get("lastError", "")) for t in targets}
        up = {job for job, (health, _, _) in seen.items() if health == "up"}
        return up >= set(JOBS), json.dumps(seen, indent=1)

    wait_for("both /metrics targets up", probe, TARGETS_UP_S, lambda: observed.logs(PROFILE))
    targets = api(prometheus, "targets", state="active")["activeTargets"]
    urls = sorted(t["scrapeUrl"] for t in targets)
    # Found in the network's DNS: one target per replica, at the container's own address.
    expected = []
    for job, port in JOBS.items():
        for network in observed.inspect(job)["NetworkSettings"]["Networks"].values():
            expected.append(f"http://{network['IPAddress']}:{port}/metrics")
    assert urls == sorted(expected), urls
    # `up` as a query too: what a dashboard or an alert rule reads
    for job in JOBS:
        assert scalar(prometheus, f'up{{job="{job}"}}') == 1.0, job


def test_encode_requests_are_counted(
    prometheus: httpx.Client, observed: Compose, mnist_test: MnistSplit
) -> None:
    """Real digits through POST /encode: the sender's request counter for /encode, as Prometheus
    scrapes it, goes up by exactly that many 200s; the receiver's /decode counter likewise."""
    encode = f'sum({REQUESTS_TOTAL}{{job="sender", route="/encode", status="200"}})'
    decode = f'sum({REQUESTS_TOTAL}{{job="receiver", route="/decode", status="200"}})'
    test_both_targets_up(prometheus, observed)  # a scrape has happened: "no series" means 0
    before_encode = scalar(prometheus, encode) or 0.0
    before_decode = scalar(prometheus, decode) or 0.0

    with httpx.Client(timeout=30) as client:
        for image in mnist_test.images[:DIGITS]:
            code = client.post(
                f"{observed.url('sender')}/encode",
                content=png_bytes(image),
                headers={"Content-Type": "image/png", "Accept": "application/octet-stream"},
            )
            assert code.status_code == 200, code.text[:500]
            png = client.post(
                f"{observed.url('receiver')}/decode",
                content=code.content,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert png.status_code == 200, png.text[:500]

    for query, before in ((encode, before_encode), (decode, before_decode)):

        def probe(query: str = query, before: float = before) -> tuple[bool, str]:
            value = scalar(prometheus, query) or 0.0
            return value >= before + DIGITS, f"{query} = {value} (before: {before})"

        wait_for(f"{query} to grow by {DIGITS}", probe, COUNTER_MOVES_S, lambda: observed.logs(PROFILE))
        # exactly: nothing else sends to this project
        assert scalar(prometheus, query) == before + DIGITS, query

    # the latency histogram of the same route is there too (what a p99 panel reads)
    p99 = scalar(
        prometheus,
        "histogram_quantile(0.99, sum by (le) "
        '(latentwire_http_request_duration_seconds_bucket{job="sender", route="/encode"}))',
    )
    assert p99 is not None and p99 > 0, p99
