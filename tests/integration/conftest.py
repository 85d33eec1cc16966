"""Fixtures for the integration tests: the docker-compose stack, driven through the real `docker compose`.

Every test here talks to the services only through the one port that docker-compose.yml publishes
on 127.0.0.1, the gateway's (``Compose.url("sender")`` is the gateway's ``/sender`` prefix, which
reaches a sender replica's own paths), never through container addresses. Each stack is a compose
project of its own (``latentwire-it-<pid>-<n>``) on a free port, so a developer's own `docker
compose up` or local services are left alone; each is torn down with ``down -v`` at the end.

Where no Docker engine (or no Compose v2) answers, the tests skip with the reason, except under
CI=true, where they fail: CI must run them (`.ci/run` starts the engine).

The session builds the images first (`docker compose build`: a no-op when they are up to date),
after filling docker/wheelhouse with scripts/ci/wheelhouse.sh when it is empty.

Settings the tests care about (all optional):
    LATENTWIRE_BASE_IMAGE       base image of the builds (default python:3.11-slim; CI: its own)
    LATENTWIRE_TORCH_INDEX_URL  build from this index instead of a wheelhouse (docs/docker.md)
    LATENTWIRE_IT_BUILD=0       build nothing: use the images as they are
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
IN_CI = os.environ.get("CI") == "true"
BUILD_TIMEOUT_S = 1800  # a first build on a developer's machine downloads the base image and torch
UP_TIMEOUT_S = 240
SERVICES = ("sender", "receiver")
PORTS = {"sender": 8001, "receiver": 8002, "gateway": 8080}  # container ports
# Settings the stack under test runs with: tighter than the defaults, so that the tests also show
# that the compose file hands each setting to its container.
STACK_SETTINGS = {
    "LATENTWIRE_SENDER_MAX_BODY_BYTES": str(1 << 20),
    "LATENTWIRE_MAX_SCALE": "8",
}
# The only LATENTWIRE_* host variables that reach compose: the others would be interpolated into
# the containers' settings (a host LATENTWIRE_ENCODER names a path that means nothing there).
PASSED_THROUGH = {"LATENTWIRE_BASE_IMAGE", "LATENTWIRE_TORCH_INDEX_URL", "LATENTWIRE_TAG"}

_counter = itertools.count()


class ComposeError(AssertionError):
    """A `docker compose` command failed; the message carries its output."""


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where the stack must be tested."""
    if IN_CI:
        pytest.fail(f"CI=true, but the integration tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"integration tests need Docker: {reason}")


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, timeout=timeout, env=env, input=input, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(
            f"{' '.join(cmd)} timed out after {timeout:.0f} s\n{_tail(exc.stdout, exc.stderr)}"
        ) from exc
    if check and proc.returncode != 0:
        raise ComposeError(f"{' '.join(cmd)} exited {proc.returncode}\n{_tail(proc.stdout, proc.stderr)}")
    return proc


def _tail(stdout: bytes | str | None, stderr: bytes | str | None, limit: int = 4000) -> str:
    def text(data: bytes | str | None) -> str:
        return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")

    return f"--- stdout ---\n{text(stdout)[-limit:]}\n--- stderr ---\n{text(stderr)[-limit:]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def docker() -> None:
    """A Docker engine and Compose v2 answer (else skip, or fail under CI=true)."""
    if shutil.which("docker") is None:
        unavailable("no `docker` command on PATH")
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        unavailable("`docker info` did not answer within 30 s")
    if info.returncode != 0:
        unavailable(f"no Docker engine answers: {info.stderr.decode(errors='replace').strip()[:300]}")
    version = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, timeout=30, check=False
    )
    if version.returncode != 0 or not version.stdout.decode().strip().lstrip("v").startswith("2"):
        unavailable(
            "Docker Compose v2 (`docker compose`) is missing; scripts/ci/docker-engine.sh installs it"
        )
    remove_stale_projects()


def remove_stale_projects() -> None:
    """Take down the projects of earlier test sessions whose process is gone (a run that was
    killed before its teardown): their restart policy would bring them back with the engine."""
    label = '{{.Label "com.docker.compose.project"}}'
    names: set[str] = set()
    for cmd in (["docker", "ps", "-a"], ["docker", "network", "ls"], ["docker", "volume", "ls"]):
        out = run([*cmd, "--filter", "label=com.docker.compose.project", "--format", label], timeout=30)
        names.update(out.stdout.decode().split())
    for name in sorted(names):
        parts = name.split("-")
        if not name.startswith("latentwire-it-") or len(parts) != 4 or not parts[2].isdigit():
            continue  # latentwire-it-<pid>-<n>
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            remove_project(name)
        except PermissionError:  # alive, someone else's
            pass


def remove_project(name: str) -> None:
    """Remove a project's containers, then networks, then volumes, found by their compose label."""
    label = f"label=com.docker.compose.project={name}"
    for listing, removal in (
        (["docker", "ps", "-a", "-q"], ["docker", "rm", "-f", "-v"]),
        (["docker", "network", "ls", "-q"], ["docker", "network", "rm"]),
        (["docker", "volume", "ls", "-q"], ["docker", "volume", "rm", "-f"]),
    ):
        ids = run([*listing, "--filter", label], timeout=30).stdout.decode().split()
        if ids:
            run([*removal, *ids], timeout=120, check=False)


@dataclass
class Compose:
    """One compose project of docker-compose.yml, with its own name, ports and settings."""

    project: str
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def new(cls, **settings: str) -> Compose:
        project = f"latentwire-it-{os.getpid()}-{next(_counter)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTWIRE_") or k in PASSED_THROUGH}
        env.pop("COMPOSE_PROJECT_NAME", None)
        env.pop("COMPOSE_PROFILES", None)
        env.pop("COMPOSE_FILE", None)
        ports = {"gateway": free_port()}
        env["LATENTWIRE_GATEWAY_PORT"] = str(ports["gateway"])
        env.update(settings)
        return cls(project=project, env=env, ports=ports)

    def url(self, service: str = "gateway") -> str:
        """The gateway's URL, or for ``sender`` / ``receiver`` its prefix that reaches a replica of
        that service (``/sender/v1/model`` is GET /v1/model of a sender); else a published port."""
        if service in SERVICES:
            return f"http://127.0.0.1:{self.ports['gateway']}/{service}"
        return f"http://127.0.0.1:{self.ports[service]}"

    def __call__(
        self,
        *args: str,
        timeout: float = 300,
        input: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [
            "docker",
            "compose",
            "-f",
            str(COMPOSE_FILE),
            "--project-directory",
            str(ROOT),
            "-p",
            self.project,
            *args,
        ]
        return run(cmd, timeout=timeout, env={**self.env, **(env or {})}, input=input, check=check)

    def build(self, *services: str) -> None:
        if os.environ.get("LATENTWIRE_IT_BUILD", "1") != "0":
            self("build", *services, timeout=BUILD_TIMEOUT_S)

    def up(self, *profiles: str, scale: dict[str, int] | None = None) -> None:
        """Start the sender, the receiver and the gateway (and the services of ``profiles``; with
        ``scale``, that many replicas of a service), wait until all are healthy."""
        flags = [arg for profile in profiles for arg in ("--profile", profile)]
        scaled = [arg for service, n in (scale or {}).items() for arg in ("--scale", f"{service}={n}")]
        try:
            self(
                *flags,
                "up",
                "-d",
                "--wait",
                "--wait-timeout",
                str(UP_TIMEOUT_S),
                *scaled,
                timeout=UP_TIMEOUT_S + 60,
            )
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n--- docker compose logs ---\n{self.logs(*profiles)}") from None

    def down(self) -> None:
        # With every profile that adds a service or a volume, so that `down -v` knows them all.
        profiles = ("--profile", "train", "--profile", "observability")
        self(*profiles, "down", "-v", "--remove-orphans", "--timeout", "10", timeout=120)

    def logs(self, *profiles: str) -> str:
        flags = [arg for profile in profiles for arg in ("--profile", profile)]
        proc = self(*flags, "logs", "--no-color", "--tail", "60", check=False, timeout=60)
        return (proc.stdout + proc.stderr).decode(errors="replace")[-6000:]

    def exec(
        self, service: str, *cmd: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return self("exec", "-T", service, *cmd, input=input, timeout=timeout)

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"expected one {service} container, found {ids}"
        return ids[0]

    def containers(self, service: str) -> list[str]:
        """The ids of ``service``'s containers (its replicas), running or not, by replica number."""
        out = self("ps", "-a", "--format", "json", service, timeout=30).stdout.decode()
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [str(row["ID"]) for row in sorted(rows, key=lambda row: int(row["Name"].rsplit("-", 1)[1]))]

    def inspect(self, service: str) -> dict:
        out = run(["docker", "inspect", self.container(service)], timeout=30).stdout
        return json.loads(out)[0]

    def image(self, service: str) -> str:
        config = json.loads(self("config", "--format", "json", timeout=60).stdout)
        return str(config["services"][service]["image"])

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes that still carry this project's label."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in {
            "containers": ["docker", "ps", "-a", "-q", "--filter", label],
            "networks": ["docker", "network", "ls", "-q", "--filter", label],
            "volumes": ["docker", "volume", "ls", "-q", "--filter", label],
        }.items():
            found[kind] = run(cmd, timeout=30).stdout.decode().split()
        return found

    def wait_healthy(self, service: str, *, deadline_s: float = 120) -> None:
        end = time.monotonic() + deadline_s
        status = "?"
        while time.monotonic() < end:
            state = self.inspect(service)["State"]
            status = state.get("Health", {}).get("Status", state["Status"])
            if state["Running"] and status == "healthy":
                return
            time.sleep(0.5)
        raise ComposeError(f"{service} not healthy after {deadline_s:.0f} s (last: {status})\n{self.logs()}")

    def wait_routed(self, service: str, *, deadline_s: float = 30) -> None:
        """Wait until the gateway reaches a ready replica of ``service``: it follows the replicas
        in DNS every couple of seconds, so a container just started may not be in its list yet."""
        end = time.monotonic() + deadline_s
        last = "?"
        with httpx.Client(base_url=self.url(service), timeout=5) as client:
            while time.monotonic() < end:
                try:
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.25)
        raise ComposeError(
            f"the gateway does not reach {service} after {deadline_s:.0f} s: {last}\n{self.logs()}"
        )


@pytest.fixture(scope="session")
def compose_projects(docker: None) -> Iterator[list[Compose]]:
    """Every project a test starts goes in this list and is taken down at the end, whatever happened."""
    projects: list[Compose] = []
    yield projects
    left = {}
    for project in projects:
        project.down()
        found = project.leftovers()
        if any(found.values()):
            left[project.project] = found
    # `down -v` must leave no container, network or volume of the project behind.
    assert not left, f"left behind by `down -v`: {left}"


@pytest.fixture(scope="session")
def built(docker: None) -> None:
    """The images, built once per session (a no-op when `.ci/run` built them already)."""
    if os.environ.get("LATENTWIRE_IT_BUILD", "1") != "0":
        ensure_wheelhouse()
    Compose.new().build()


def ensure_wheelhouse() -> None:
    """Fill docker/wheelhouse from this interpreter's pip, as CI does, when it is empty.

    The images then get the same CPU build of torch as the tests' own environment, without the
    network during the build. Where this interpreter is not CPython 3.11 on x86_64 (the images'
    ABI), or LATENTWIRE_TORCH_INDEX_URL names an index, the build installs from the index instead.
    """
    wheelhouse = ROOT / "docker" / "wheelhouse"
    if any(wheelhouse.glob("torch-*.whl")) or os.environ.get("LATENTWIRE_TORCH_INDEX_URL"):
        return
    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
        return
    run(
        ["bash", str(ROOT / "scripts" / "ci" / "wheelhouse.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        timeout=BUILD_TIMEOUT_S,
    )


@pytest.fixture(scope="session")
def stack(built: None, compose_projects: list[Compose]) -> Compose:
    """The sender and the receiver, up and healthy, serving the shipped checkpoints."""
    compose = Compose.new(**STACK_SETTINGS)
    compose_projects.append(compose)
    compose.up()
    return compose


# --------------------------------------------------------------------------- helpers for the tests


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_b64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG", image.format
        assert image.mode == "L", f"expected a grayscale PNG, got mode {image.mode}"
        return np.asarray(image, dtype=np.uint8).copy()


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, str]:
    """The JSON error shape every 4xx of the services has."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert body.get("error") == error, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert isinstance(body.get("hint"), str), body
    return body
