"""Graceful shutdown in compose: `docker compose stop` sends SIGTERM (through tini, `init: true`);
the service stops taking connections, finishes the requests it has (uvicorn's graceful timeout,
LATENTWIRE_GRACEFUL_TIMEOUT_S, default 10 s, under compose's stop_grace_period of 15 s) and exits 0;
`docker compose start` brings it back healthy.

The stack here is a project of its own: stopping a service must not disturb the other tests.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from latentwire.data import MnistSplit
from latentwire.preprocess import png_bytes
from tests.integration.conftest import Compose, from_b64

pytestmark = pytest.mark.integration

BATCH = 256  # digits per /encode/batch request: the sender's default limit
# Forward passes of one digit each, so that a 256-digit request takes ~0.4 s of CPU rather than
# ~50 ms and the requests in flight at SIGTERM outlast the signal by seconds; admission room for
# all of them at once (the default queue, 2,048 digits, would refuse some with 503).
SETTINGS = {"LATENTWIRE_SENDER_BATCH_SIZE": "1", "LATENTWIRE_SENDER_MAX_PENDING": "16384"}
QUEUED_WORK_S = 3.0  # the work in flight when SIGTERM comes: well within the 10 s graceful timeout
MIN_REQUESTS, MAX_REQUESTS = 4, 40
FIRE_TO_STOP_S = 0.5  # from the requests leaving to `docker compose stop`: all bodies are in
GRACEFUL_TIMEOUT_S = 10  # the services' default, which the stack here keeps


@dataclass
class Outcome:
    status: int | None = None
    codes: int = 0
    error: str = ""
    done_at: float = 0.0


@pytest.fixture(scope="module")
def stack_to_stop(built: None, compose_projects: list[Compose]) -> Compose:
    compose = Compose.new(**SETTINGS)
    compose_projects.append(compose)
    compose.up()
    return compose


@pytest.fixture(scope="module")
def batch_files(mnist_test: MnistSplit) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"{i}.png", png_bytes(image), "image/png"))
        for i, image in enumerate(mnist_test.images[:BATCH])
    ]


def _encode_batch(client: httpx.Client, files: list[tuple[str, tuple[str, bytes, str]]]) -> Outcome:
    outcome = Outcome()
    try:
        response = client.post("/encode/batch", params={"preprocess": "false"}, files=files)
        outcome.status = response.status_code
        if response.status_code == 200:
            codes = response.json()["codes"]
            outcome.codes = sum(1 for item in codes if len(from_b64(item["code"])) == item["bytes"] > 0)
        else:
            outcome.error = response.text[:300]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.done_at = time.monotonic()
    return outcome


def _exit_state(compose: Compose, service: str) -> dict:
    return compose.inspect(service)["State"]


def _running(compose: Compose, service: str) -> None:
    """Start ``service`` again if an earlier test left it stopped, and wait until it is healthy."""
    if not _exit_state(compose, service)["Running"]:
        compose("start", service, timeout=120)
    compose.wait_healthy(service)
    compose.wait_routed(service)


def _logs_since(compose: Compose, service: str, since: float) -> str:
    proc = compose("logs", "--no-color", "--since", f"{math.floor(since)}", service, check=False, timeout=30)
    return (proc.stdout + proc.stderr).decode(errors="replace")


def test_sigterm_finishes_requests_in_flight_then_exits_0(
    stack_to_stop: Compose, batch_files: list[tuple[str, tuple[str, bytes, str]]]
) -> None:
    compose = stack_to_stop
    _running(compose, "sender")
    url = compose.url("sender")
    # How long one request takes here (the first warms up), to queue QUEUED_WORK_S of them.
    with httpx.Client(base_url=url, timeout=60) as client:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            warm = _encode_batch(client, batch_files)
            assert warm.status == 200 and warm.codes == BATCH, warm
            timings.append(time.monotonic() - started)
    per_request = min(timings[1:])
    count = max(MIN_REQUESTS, min(MAX_REQUESTS, math.ceil(QUEUED_WORK_S / per_request)))

    # One client (one connection, opened and used before) per request: each POST goes over a
    # connection the service accepted long before the stop.
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(count)]
    outcomes: list[Outcome | None] = [None] * count
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        go = threading.Barrier(count + 1)

        def send(i: int) -> None:
            go.wait()
            outcomes[i] = _encode_batch(clients[i], batch_files)

        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        go.wait()
        fired_at = time.monotonic()
        time.sleep(FIRE_TO_STOP_S)
        wall_before_stop = time.time()
        stop_at = time.monotonic()
        compose("stop", "sender", timeout=60)
        stopped_after = time.monotonic() - stop_at
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()

    summary = "\n".join(
        f"  #{i}: {o.status} codes={o.codes} {o.error} done {o.done_at - fired_at:+.2f} s after firing"
        for i, o in enumerate(outcomes)
        if o is not None
    )
    context = (
        f"{count} requests of {BATCH} digits ({per_request:.2f} s each alone), fired, stop after "
        f"{FIRE_TO_STOP_S} s; the stop took {stopped_after:.2f} s\n{summary}\n"
        f"--- sender log ---\n{_logs_since(compose, 'sender', wall_before_stop - 5)[-4000:]}"
    )
    assert all(o is not None for o in outcomes), f"a request never returned\n{context}"
    finished = [o for o in outcomes if o is not None]
    # None was cut: every request got a complete 200 with all its codes.
    cut = [o for o in finished if o.status != 200 or o.codes != BATCH]
    assert not cut, f"{len(cut)} of {count} requests in flight were not answered in full\n{context}"
    # The stop really came while they were in flight (else this proves nothing).
    after_stop = [o for o in finished if o.done_at > stop_at]
    assert after_stop, f"every request finished before the stop: make them heavier\n{context}"
    # uvicorn's graceful shutdown ended it, not compose's SIGKILL after stop_grace_period (15 s).
    assert stopped_after < GRACEFUL_TIMEOUT_S + 2, context
    state = _exit_state(compose, "sender")
    assert state["Status"] == "exited", (state, context)
    assert not state["OOMKilled"], state
    log = _logs_since(compose, "sender", wall_before_stop - 1)
    assert "Shutting down" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]

    # And back: `start` runs the same container again, healthy, serving (through the gateway,
    # which finds it in DNS again).
    compose("start", "sender", timeout=120)
    compose.wait_healthy("sender")
    compose.wait_routed("sender")
    with httpx.Client(base_url=url, timeout=60) as client:
        again = _encode_batch(client, batch_files)
    assert again.status == 200 and again.codes == BATCH, again
    # Last, so that a wrong exit code does not hide whether the rest works.
    assert state["ExitCode"] == 0, f"the sender exited {state['ExitCode']} after SIGTERM, not 0\n{context}"


def test_new_connections_are_refused_while_draining(
    stack_to_stop: Compose, batch_files: list[tuple[str, tuple[str, bytes, str]]]
) -> None:
    """Once the service logs its shutdown, a new request is never served by it: the gateway cannot
    reach the only sender replica and answers its own 502 "unavailable" (or 504 "timeout" once the
    container is gone)."""
    compose = stack_to_stop
    _running(compose, "sender")
    url = compose.url("sender")
    count = 8
    with httpx.Client(base_url=url, timeout=60) as client:
        assert _encode_batch(client, batch_files).status == 200
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(count)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        threads = [
            threading.Thread(target=_encode_batch, args=(client, batch_files), daemon=True)
            for client in clients
        ]
        for thread in threads:
            thread.start()
        time.sleep(FIRE_TO_STOP_S)
        since = time.time() - 1
        stopper = threading.Thread(
            target=compose, args=("stop", "sender"), kwargs={"timeout": 60}, daemon=True
        )
        stopper.start()
        deadline = time.monotonic() + 15
        while "Shutting down" not in _logs_since(compose, "sender", since):
            assert time.monotonic() < deadline, "the sender never logged its shutdown"
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=10) as late:
            try:
                response = late.get("/v1/model")
            except httpx.TransportError:
                pass  # refused or closed: not served
            else:
                unavailable = (response.status_code, response.json().get("error")) in {
                    (502, "unavailable"),
                    (504, "timeout"),
                }
                assert unavailable, (
                    f"a request made after SIGTERM was served: {response.status_code} {response.text[:300]}"
                )
        stopper.join(timeout=60)
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()
    compose("start", "sender", timeout=120)
    compose.wait_healthy("sender")


@pytest.mark.parametrize("service", ["sender", "receiver"])
def test_idle_service_stops_at_once_with_0(stack_to_stop: Compose, service: str) -> None:
    """With nothing in flight the stop takes about a second (tini forwards SIGTERM), exit code 0."""
    compose = stack_to_stop
    _running(compose, service)
    started = time.monotonic()
    compose("stop", service, timeout=60)
    took = time.monotonic() - started
    state = _exit_state(compose, service)
    compose("start", service, timeout=120)
    compose.wait_healthy(service)
    assert took < 5, f"stopping an idle {service} took {took:.1f} s"
    assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']} after SIGTERM, not 0"
