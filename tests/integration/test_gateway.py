"""The gateway (nginx, docker/gateway/): the stack's one published port, over replicated senders
and receivers.

The first tests use the session's stack (one replica of each): routes, the JSON errors the gateway
makes itself, body limits equal to the services'. The last one runs a stack of its own with two
replicas of each service and kills one of each under load.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import png_bytes
from tests.integration.conftest import STACK_SETTINGS, Compose, assert_error, png_pixels, run

pytestmark = pytest.mark.integration

OCTET = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
PNG = {"Content-Type": "image/png", "Accept": "application/octet-stream"}


@pytest.fixture(scope="module")
def gateway(stack: Compose) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url(), timeout=60) as client:
        yield client


def test_gateway_health_and_demo_page(gateway: httpx.Client) -> None:
    assert gateway.get("/healthz").json() == {"status": "ok", "service": "gateway"}
    page = gateway.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # The page's own assets, by the relative names it uses.
    for asset in ("demo.js", "demo.css"):
        response = gateway.get(f"/{asset}")
        assert response.status_code == 200 and response.content, asset


def test_gateway_routes_to_each_service(gateway: httpx.Client, mnist_test: MnistSplit) -> None:
    """/encode and /decode reach the services; /sender/<path> and /receiver/<path> reach <path>."""
    digit = mnist_test.images[0]
    code = gateway.post("/encode", params={"preprocess": "false"}, content=png_bytes(digit), headers=PNG)
    assert code.status_code == 200, code.text[:300]
    expected_code = EncoderLadder.load().default.compress(digit[None])[0]
    assert code.content == expected_code
    image = gateway.post("/decode", content=code.content, headers=OCTET)
    assert image.status_code == 200, image.text[:300]
    assert np.array_equal(png_pixels(image.content), DecoderLadder.load().decompress([expected_code])[0][0])

    assert gateway.get("/sender/v1/model").json()["half"] == "encoder"
    assert gateway.get("/receiver/v1/model").json()["half"] == "decoder"
    assert gateway.get("/sender/readyz").json()["status"] == "ready"
    # The client's request id reaches the service, which echoes it.
    response = gateway.get("/receiver/healthz", headers={"X-Request-ID": "gateway-test-1"})
    assert response.headers["x-request-id"] == "gateway-test-1"


def test_gateway_errors_are_the_services_json_shape(gateway: httpx.Client, stack: Compose) -> None:
    # The gateway's own 404 has the services' error name ("http_error", as FastAPI's 404 is
    # mapped), a hint of its own; a service's 404 passes through as the service made it.
    body = assert_error(gateway.get("/no/such/path"), 404, "http_error")
    assert "/encode" in body["hint"]
    assert "/docs" in assert_error(gateway.get("/sender/no-such-path"), 404, "http_error")["hint"]
    # The sender's limit (STACK_SETTINGS) is the gateway's: a body of exactly that size reaches the
    # sender (which finds no image in it), one byte more is refused by the gateway.
    limit = int(STACK_SETTINGS["LATENTWIRE_SENDER_MAX_BODY_BYTES"])
    at_limit = gateway.post("/encode", content=b"\0" * limit, headers=PNG)
    assert_error(at_limit, 422, "bad_image")
    over = gateway.post("/encode", content=b"\0" * (limit + 1), headers=PNG)
    body = assert_error(over, 413, "too_large")
    assert str(limit) in body["detail"]
    assert over.headers["x-request-id"]
    # What nginx refuses by itself speaks JSON too: a method the demo files do not take, a
    # request line too long, headers too large.
    assert_error(gateway.delete("/"), 405, "http_error")
    assert_error(gateway.get("/" + "a" * 9000), 414, "http_error")
    assert_error(gateway.get("/healthz", headers={"X-Big": "a" * 70_000}), 400, "bad_request")


def test_gateway_errors_on_large_bodies_are_json_too(gateway: httpx.Client, stack: Compose) -> None:
    """An error page met on a body over nginx's default 1 MiB is not refused again (as nginx's
    own HTML 413): a chunked upload over the limit, and a large body when no replica answers."""

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"\0" * (1 << 20)

    assert_error(gateway.post("/encode", content=chunks(), headers=PNG), 413, "too_large")
    stack("stop", "receiver", timeout=60)
    try:
        response = gateway.post("/decode", content=b"\0" * (2 << 20), headers=OCTET)
        assert response.status_code in (502, 504), response.text[:300]
        assert response.json()["error"] in ("unavailable", "timeout")
        assert response.headers["retry-after"] == "1"
    finally:
        stack("start", "receiver", timeout=120)
        stack.wait_healthy("receiver")
        stack.wait_routed("receiver")


def test_gateway_keeps_per_replica_paths_inside(gateway: httpx.Client) -> None:
    """A replica's /metrics (Prometheus scrapes each inside the network) and the sender's own copy
    of the demo (the gateway serves it at /) are not reachable through the gateway."""
    for path in ("/sender/metrics", "/receiver/metrics", "/sender//metrics", "/sender/demo/"):
        assert_error(gateway.get(path), 404, "http_error")
    assert gateway.get("/sender/openapi.json").json()["info"]["title"]


def test_gateway_settings_follow_the_services(docker: None) -> None:
    """The compose file hands the gateway the services' body limits (their own setting first,
    then the shared one) under its own names."""
    compose = Compose.new(LATENTWIRE_SENDER_MAX_BODY_BYTES="1234", LATENTWIRE_MAX_BODY_BYTES="5678")
    env = json.loads(compose("config", "--format", "json", timeout=60).stdout)["services"]["gateway"][
        "environment"
    ]
    assert env["LATENTWIRE_GATEWAY_SENDER_MAX_BODY_BYTES"] == "1234"
    assert env["LATENTWIRE_GATEWAY_RECEIVER_MAX_BODY_BYTES"] == "5678"


def test_gateway_refuses_a_bad_setting(stack: Compose) -> None:
    """A setting the entrypoint cannot use stops it with exit 2 and says which, before nginx starts."""
    image = stack.image("gateway")
    proc = run(
        ["docker", "run", "--rm", "-e", "LATENTWIRE_GATEWAY_TIMEOUT_S=soon", image],
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc
    assert b"LATENTWIRE_GATEWAY_TIMEOUT_S=soon is not valid" in proc.stderr


# --------------------------------------------------------------------------- replicas under faults

REPLICAS = 2
CLIENTS = 3  # threads, each a loop of /encode then /decode of real digits
DIGITS = 32
WARM_S, BEFORE_S, AFTER_S, RECOVERED_S = 2.0, 5.0, 6.0, 3.0


@pytest.fixture(scope="module")
def replicated(built: None, compose_projects: list[Compose]) -> Compose:
    compose = Compose.new()
    compose_projects.append(compose)
    compose.up(scale={"sender": REPLICAS, "receiver": REPLICAS})
    return compose


@dataclass
class Load:
    """Clients that keep sending digits through the gateway and record every outcome."""

    url: str
    images: np.ndarray
    codes: list[bytes]
    pixels: np.ndarray
    outcomes: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = offset
            while not self.stop.is_set():
                self.outcomes.append((time.monotonic(), self._round_trip(client, i % len(self.images))))
                i += CLIENTS

    def _round_trip(self, client: httpx.Client, i: int) -> str:
        try:
            code = client.post(
                "/encode", params={"preprocess": "false"}, content=png_bytes(self.images[i]), headers=PNG
            )
            if code.status_code != 200:
                return f"encode {code.status_code} {_error(code)}"
            if code.content != self.codes[i]:
                return "wrong code"
            image = client.post("/decode", content=code.content, headers=OCTET)
            if image.status_code != 200:
                return f"decode {image.status_code} {_error(image)}"
            return "ok" if np.array_equal(png_pixels(image.content), self.pixels[i]) else "wrong image"
        except httpx.TransportError as exc:
            return f"transport {type(exc).__name__}"

    def ok_per_s(self, start: float, end: float) -> float:
        return sum(1 for t, o in list(self.outcomes) if start <= t < end and o == "ok") / (end - start)


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return "(not JSON)"


def _served(container: str, route: str) -> int:
    """Requests to ``route`` that a replica answered with 200, from its access log."""
    logs = run(["docker", "logs", container], timeout=60)
    return (logs.stdout + logs.stderr).decode(errors="replace").count(f"route={route} status=200")


def test_replicas_share_the_load_and_survive_a_kill(replicated: Compose, mnist_test: MnistSplit) -> None:
    """Two replicas of each service behind the gateway, three clients sending real digits: both
    replicas of each serve; `docker kill` of one sender and one receiver costs at most a few
    requests, all connection-level (the gateway retries the rest on the other replica); no answer
    is ever a wrong code or a wrong image; throughput recovers; and a replica that comes back is
    put back in the rotation without touching the gateway."""
    compose = replicated
    images = mnist_test.images[:DIGITS]
    codes = EncoderLadder.load().default.compress(images)
    pixels, _ = DecoderLadder.load().decompress(codes)
    senders, receivers = compose.containers("sender"), compose.containers("receiver")
    assert len(senders) == len(receivers) == REPLICAS

    load = Load(url=compose.url(), images=images, codes=codes, pixels=pixels)
    threads = [threading.Thread(target=load.run, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM_S)
        before_start = time.monotonic()
        time.sleep(BEFORE_S)
        served_before = {c: _served(c, "/encode") for c in senders} | {
            c: _served(c, "/decode") for c in receivers
        }
        killed_at = time.monotonic()
        run(["docker", "kill", senders[0], receivers[1]], timeout=60)
        time.sleep(AFTER_S)
        after_end = time.monotonic()

        # Back to two replicas: compose starts the killed containers again; the gateway finds them.
        compose("up", "-d", "--no-recreate", "--wait", "--scale", f"sender={REPLICAS}",
                "--scale", f"receiver={REPLICAS}", timeout=180)  # fmt: skip
        back_at = time.monotonic()
        revived = {senders[0]: "/encode", receivers[1]: "/decode"}
        counts = {c: _served(c, route) for c, route in revived.items()}
        deadline = back_at + 30
        while any(_served(c, route) <= counts[c] for c, route in revived.items()):
            assert time.monotonic() < deadline, (
                f"a restarted replica got no requests in 30 s\n{compose.logs()}"
            )
            time.sleep(0.5)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)

    outcomes = Counter(o for _, o in load.outcomes)
    failures = {o: n for o, n in outcomes.items() if o != "ok"}
    context = f"outcomes {dict(outcomes)}; served before the kill {served_before}\n{compose.logs()}"
    assert not {o for o in failures if o.startswith("wrong")}, context
    # Connection-level only: a transport error, or the gateway's own 502 or 504 when no replica
    # could be reached.
    assert all(
        o.startswith("transport") or o.endswith(("502 unavailable", "504 timeout")) for o in failures
    ), context
    assert sum(failures.values()) <= max(5, 0.02 * sum(outcomes.values())), context
    # The load was spread: every replica answered requests before the kill.
    assert all(n > 0 for n in served_before.values()), context
    # And it recovered: the last seconds with one replica of each serve about as many as two did
    # (two CPU cores here: a second replica adds little), and far more than nothing.
    before = load.ok_per_s(before_start, killed_at)
    recovered = load.ok_per_s(after_end - RECOVERED_S, after_end)
    assert before > 0 and recovered >= 0.25 * before, (
        f"{recovered:.1f}/s after vs {before:.1f}/s before; {context}"
    )
    print(f"round trips: {dict(outcomes)}; {before:.0f}/s before the kill, {recovered:.0f}/s after")
