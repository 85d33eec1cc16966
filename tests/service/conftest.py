"""Fixtures for the service tests: real uvicorn processes on loopback, and in-process apps.

The sender is started with a directory holding ONLY ``encoder.safetensors`` and the receiver
with one holding ONLY ``decoder.safetensors``: the end-to-end tests passing shows that neither
service needs the other half's file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from latentwire.checkpoint import DECODER_FILE, ENCODER_FILE
from latentwire.codec import Compressor, Decompressor
from latentwire.data import MnistSplit
from latentwire.ladder import DecoderLadder, EncoderLadder
from latentwire.preprocess import png_bytes
from tests.conftest import make_checkpoint

READY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight checkpoint pair shared by every service test."""
    return make_checkpoint(tmp_path_factory.mktemp("service-ckpt"))


@pytest.fixture(scope="session")
def encoder_only_dir(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the encoder file and nothing else."""
    directory = tmp_path_factory.mktemp("encoder-only")
    shutil.copy2(checkpoint_dir / ENCODER_FILE, directory / ENCODER_FILE)
    return directory


@pytest.fixture(scope="session")
def decoder_only_dir(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the decoder file and nothing else."""
    directory = tmp_path_factory.mktemp("decoder-only")
    shutil.copy2(checkpoint_dir / DECODER_FILE, directory / DECODER_FILE)
    return directory


@pytest.fixture(scope="session")
def compressor(encoder_only_dir: Path) -> Compressor:
    return Compressor.from_checkpoint(encoder_only_dir)


@pytest.fixture(scope="session")
def decompressor(decoder_only_dir: Path) -> Decompressor:
    return Decompressor.from_checkpoint(decoder_only_dir)


@pytest.fixture(scope="session")
def encoder_ladder(compressor: Compressor) -> EncoderLadder:
    """A ladder of one: what the sender serves when given one checkpoint."""
    return EncoderLadder([compressor])


@pytest.fixture(scope="session")
def decoder_ladder(decompressor: Decompressor) -> DecoderLadder:
    return DecoderLadder([decompressor])


@pytest.fixture(scope="session")
def digit_pngs(mnist_test: MnistSplit) -> list[bytes]:
    """A few real MNIST test digits as 28×28 PNG files (skips where MNIST is absent)."""
    return [png_bytes(mnist_test.images[i]) for i in range(4)]


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, str]:
    """A 4xx answer in the one error shape, with the given machine-readable code; its body."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "detail", "hint"}, body
    assert all(isinstance(v, str) and v for v in body.values()), body
    assert body["error"] == error, body
    return body


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_command(name: str) -> list[str]:
    """The installed console script (``latentwire-sender`` / ``latentwire-receiver``)."""
    script = Path(sys.executable).parent / f"latentwire-{name}"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", f"from latentwire_{name}.main import run; run()"]


def service_env() -> dict[str, str]:
    """The test environment without LATENTWIRE_* settings, and one torch thread (the CPU is shared)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTWIRE_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@dataclass
class Service:
    """One running service process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def launch(
    name: str,
    checkpoint_flag: str,
    checkpoint: Path | None,
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Service:
    """Start ``latentwire-<name>`` on a free loopback port; output goes to a file (never a full pipe).

    ``checkpoint`` None serves the shipped ladder; ``env`` adds settings (LATENTWIRE_…).
    """
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    log = log_path.open("wb")
    command = [*service_command(name), "--host", "127.0.0.1", "--port", str(port)]
    if checkpoint is not None:
        command += [checkpoint_flag, str(checkpoint)]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**service_env(), **(env or {})}
    )
    return Service(name, f"http://127.0.0.1:{port}", process, log_path, log)


def wait_ready(service: Service, deadline: float) -> str | None:
    """Poll /readyz until 200 (None) or return why it failed: the process died or time ran out."""
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                return f"exited with code {service.process.returncode}"
            try:
                if client.get(f"{service.url}/readyz").status_code == 200:
                    return None
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return f"not ready after {READY_DEADLINE_S:.0f} s"


ServiceSpec = tuple[str, str, Path | None] | tuple[str, str, Path | None, dict[str, str]]


def start_services(specs: list[ServiceSpec], log_dir: Path, attempts: int = 3) -> list[Service]:
    """Start the services side by side (each imports torch: seconds) and wait for all to be ready.

    A port taken between ``free_port`` and the bind is retried on a fresh port.
    """
    services = [launch(*spec[:3], log_dir, *spec[3:]) for spec in specs]
    deadline = time.monotonic() + READY_DEADLINE_S
    for i, spec in enumerate(specs):
        for attempt in range(attempts):
            problem = wait_ready(services[i], deadline)
            if problem is None:
                break
            services[i].stop()
            output = services[i].log()
            if "address already in use" in output.lower() and attempt + 1 < attempts:
                services[i] = launch(*specs[i][:3], log_dir, *specs[i][3:])
                deadline = time.monotonic() + READY_DEADLINE_S
                continue
            for other in services:
                other.stop()
            pytest.fail(
                f"latentwire-{spec[0]} did not start ({problem}); its output:\n{output}", pytrace=False
            )
    return services


@pytest.fixture(scope="session")
def services(
    encoder_only_dir: Path, decoder_only_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service]]:
    """A real sender and receiver, each given only its own checkpoint half."""
    log_dir = tmp_path_factory.mktemp("service-logs")
    sender, receiver = start_services(
        [("sender", "--encoder", encoder_only_dir), ("receiver", "--decoder", decoder_only_dir)], log_dir
    )
    yield sender, receiver
    sender.stop()
    receiver.stop()


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    """A sender and a receiver on the shipped ladder (no checkpoint flag: the defaults), loaded
    before their apps are built (so their OpenAPI documents list the ladder's levels)."""
    log_dir = tmp_path_factory.mktemp("shipped-logs")
    sender, receiver = start_services(
        [("sender", "--encoder", None), ("receiver", "--decoder", None)], log_dir
    )
    yield sender, receiver
    sender.stop()
    receiver.stop()


@pytest.fixture(scope="session")
def sender(services: tuple[Service, Service]) -> Service:
    return services[0]


@pytest.fixture(scope="session")
def receiver(services: tuple[Service, Service]) -> Service:
    return services[1]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client
