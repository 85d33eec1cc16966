"""The docker-compose stack, driven through `docker compose` and the gateway's port on 127.0.0.1.

Real MNIST test digits go through the sender's and the receiver's containers; the results are
checked against the metrics the shipped checkpoint records about itself.
"""

from __future__ import annotations

import json
import math
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pytest

from latentwire.codec import Compressor
from latentwire.data import MnistSplit
from latentwire.preprocess import png_bytes, psnr
from tests.conftest import make_checkpoint
from tests.integration.conftest import (
    PORTS,
    STACK_SETTINGS,
    Compose,
    assert_error,
    b64url,
    from_b64,
    png_pixels,
)

pytestmark = pytest.mark.integration

OCTET = {"Content-Type": "application/octet-stream"}
PNG = {"Content-Type": "image/png"}
SAMPLE = 1000  # test digits for the PSNR check: its PSNR is within ~0.1 dB of the 10k set's
CHUNK = 100  # digits per batch request (the sender's default limit is 256)
PSNR_TOLERANCE_DB = 0.5
OTHER_HALF = {"sender": "decoder", "receiver": "encoder"}


@pytest.fixture(scope="module")
def sender(stack: Compose) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("sender"), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def receiver(stack: Compose) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("receiver"), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def model(sender: httpx.Client, receiver: httpx.Client) -> dict[str, Any]:
    """GET /v1/model of the sender (the receiver's is checked to agree)."""
    info = sender.get("/v1/model").json()
    assert receiver.get("/v1/model").json()["model_id"] == info["model_id"]
    return info


@pytest.fixture(scope="module")
def sample(mnist_test: MnistSplit) -> np.ndarray:
    """SAMPLE test digits drawn across the whole 10k test set (seeded)."""
    index = np.sort(np.random.default_rng(0).choice(len(mnist_test.images), SAMPLE, replace=False))
    return mnist_test.images[index]


def encode_batch(sender: httpx.Client, images: np.ndarray) -> list[bytes]:
    """Codes of ``images`` (28×28 uint8, sent as PNG files as they are) through POST /encode/batch."""
    codes: list[bytes] = []
    for start in range(0, len(images), CHUNK):
        files = [
            ("files", (f"{start + i}.png", png_bytes(image), "image/png"))
            for i, image in enumerate(images[start : start + CHUNK])
        ]
        response = sender.post("/encode/batch", params={"preprocess": "false"}, files=files)
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert len(body["codes"]) == len(files)
        for item in body["codes"]:
            code = from_b64(item["code"])
            assert item["bytes"] == len(code)
            codes.append(code)
    return codes


def decode_batch(receiver: httpx.Client, codes: list[bytes]) -> np.ndarray:
    images: list[np.ndarray] = []
    for start in range(0, len(codes), CHUNK):
        chunk = codes[start : start + CHUNK]
        response = receiver.post("/decode/batch", json={"codes": [b64url(c) for c in chunk]})
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert len(body["images"]) == len(chunk)
        images.extend(png_pixels(from_b64(png)) for png in body["images"])
    return np.stack(images)


# --------------------------------------------------------------------------- health and model


@pytest.mark.parametrize("service", ["sender", "receiver"])
def test_health_endpoints(stack: Compose, service: str) -> None:
    with httpx.Client(base_url=stack.url(service), timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        info = client.get("/v1/model").json()
    assert info["half"] == {"sender": "encoder", "receiver": "decoder"}[service]
    for key in ("model_id", "preset", "code_format_version"):
        assert info[key], info
    assert math.isfinite(info["metrics"]["psnr"]) and info["metrics"]["code_bytes"] > 0


def test_containers_run_as_configured(stack: Compose) -> None:
    """init (tini) as PID 1, a restart policy, a non-root user, a read-only root file system; one
    published port, the gateway's, on loopback only: the services are reached through it."""
    for service, port in PORTS.items():
        attrs = stack.inspect(service)
        assert attrs["HostConfig"]["Init"] is True
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert attrs["Config"]["User"] not in ("", "0", "root", "0:0")
        assert attrs["State"]["Health"]["Status"] == "healthy"
        bindings = attrs["HostConfig"]["PortBindings"] or {}
        if service == "gateway":
            assert list(bindings) == [f"{port}/tcp"], bindings
            assert [b["HostIp"] for b in bindings[f"{port}/tcp"]] == ["127.0.0.1"]
            assert [b["HostPort"] for b in bindings[f"{port}/tcp"]] == [str(stack.ports["gateway"])]
        else:
            assert not bindings, f"{service} publishes {bindings}: only the gateway may"


# --------------------------------------------------------------------------- round trips


def test_single_digits_round_trip(
    sender: httpx.Client, receiver: httpx.Client, model: dict[str, Any], mnist_test: MnistSplit
) -> None:
    """A few test digits one by one, through each request form the contract offers."""
    for index in (0, 1, 2, 3, 4):
        image = mnist_test.images[index]
        png = png_bytes(image)
        raw = sender.post("/encode", params={"preprocess": "false"}, content=png, headers=PNG)
        assert raw.status_code == 200, raw.text[:300]
        body = raw.json()
        code = from_b64(body["code"])
        assert body["bytes"] == len(code) and body["model_id"] == model["model_id"]
        # the same image as a multipart file, and with Accept: application/octet-stream
        form = sender.post(
            "/encode", params={"preprocess": "false"}, files={"file": ("d.png", png, "image/png")}
        )
        assert from_b64(form.json()["code"]) == code
        octet = sender.post(
            "/encode",
            params={"preprocess": "false"},
            content=png,
            headers={**PNG, "Accept": "application/octet-stream"},
        )
        assert octet.status_code == 200 and octet.content == code

        decoded = receiver.post("/decode", content=code, headers=OCTET)
        assert decoded.status_code == 200, decoded.text[:300]
        assert decoded.headers["content-type"].startswith("image/png")
        pixels = png_pixels(decoded.content)
        assert pixels.shape == (28, 28)
        assert psnr(image, pixels) > model["metrics"]["psnr"] - 10, "not a reconstruction of this digit"
        as_json = receiver.post("/decode", json={"code": b64url(code)})
        assert as_json.content == decoded.content
        scaled = png_pixels(
            receiver.post("/decode", params={"scale": 3}, content=code, headers=OCTET).content
        )
        assert scaled.shape == (84, 84)
        assert np.array_equal(scaled[::3, ::3], pixels)


def test_batch_psnr_and_code_size_match_the_checkpoint(
    sender: httpx.Client, receiver: httpx.Client, model: dict[str, Any], sample: np.ndarray
) -> None:
    """SAMPLE digits via /encode/batch and /decode/batch: the PSNR of their mean MSE is within
    0.5 dB of the checkpoint's recorded test-set PSNR, and the codes are the recorded size."""
    codes = encode_batch(sender, sample)
    decoded = decode_batch(receiver, codes)
    measured = psnr(sample, decoded)
    recorded = float(model["metrics"]["psnr"])
    assert abs(measured - recorded) <= PSNR_TOLERANCE_DB, (
        f"PSNR {measured:.2f} dB, recorded {recorded:.2f} dB"
    )

    sizes = np.array([len(c) for c in codes], dtype=np.float64)
    recorded_bytes = float(model["metrics"]["code_bytes"])
    if len(set(sizes.tolist())) == 1:  # fixed-size codes: exactly the recorded size
        assert sizes[0] == recorded_bytes
    else:  # entropy-coded: the sample's mean is close to the test set's
        assert abs(sizes.mean() - recorded_bytes) <= 0.05 * recorded_bytes, (sizes.mean(), recorded_bytes)

    # a single /decode of one of them gives the same image as the batch did
    single = receiver.post("/decode", content=codes[7], headers=OCTET)
    assert np.array_equal(png_pixels(single.content), decoded[7])


def test_client_profile_round_trip(stack: Compose, mnist_test: MnistSplit, tmp_path: Path) -> None:
    """The command-line client's container, started once both services are healthy, reaches them."""
    tmp_path.chmod(0o755)  # the client runs as its own user
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(mnist_test.images[0]))
    digit.chmod(0o644)
    out = stack(
        "--profile", "client", "run", "--rm", "client", "roundtrip", "--no-preprocess", "/work/digit.png",
        env={"LATENTWIRE_CLIENT_DIR": str(tmp_path)},
        timeout=180,
    )  # fmt: skip
    line = out.stdout.decode()
    assert "/work/digit.png:" in line and "bytes" in line and "PSNR" in line, line


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def good_code(sender: httpx.Client, mnist_test: MnistSplit) -> bytes:
    return encode_batch(sender, mnist_test.images[:1])[0]


@pytest.fixture(scope="module")
def foreign_code(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """A well-formed code made by another model (a random-weight checkpoint made here)."""
    other = Compressor.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("other-model"), seed=7))
    (code,) = other.compress(np.zeros((1, 28, 28), np.uint8))
    return code, other.model_id


def test_sender_refusals(sender: httpx.Client) -> None:
    png = png_bytes(np.zeros((28, 28), np.uint8))
    assert_error(sender.post("/encode", content=b"", headers=PNG), 400, "bad_request")
    assert_error(
        sender.post("/encode", content=png, headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error(sender.post("/encode", content=b"hello, not a picture", headers=PNG), 422, "bad_image")
    assert_error(sender.post("/encode/batch", content=png, headers=PNG), 415, "unsupported_media_type")
    files = [("files", ("a.png", png, "image/png")), ("files", ("b.png", b"junk", "image/png"))]
    assert_error(sender.post("/encode/batch", files=files), 422, "bad_image")
    # over LATENTWIRE_SENDER_MAX_BODY_BYTES as the compose file passed it (1 MiB; the default is 10)
    limit = int(STACK_SETTINGS["LATENTWIRE_SENDER_MAX_BODY_BYTES"])
    assert_error(sender.post("/encode", content=b"\0" * (limit + 1), headers=PNG), 413, "too_large")


def test_receiver_refusals(receiver: httpx.Client, good_code: bytes, foreign_code: tuple[bytes, str]) -> None:
    assert_error(receiver.post("/decode", content=b"", headers=OCTET), 400, "bad_request")
    assert_error(
        receiver.post("/decode", content=good_code, headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error(receiver.post("/decode", content=good_code[:-1], headers=OCTET), 422, "bad_code")
    corrupted = bytearray(good_code)
    corrupted[len(corrupted) // 2] ^= 0x01
    assert_error(receiver.post("/decode", content=bytes(corrupted), headers=OCTET), 422, "bad_code")
    assert_error(receiver.post("/decode", json={"code": "!!!not base64!!!"}), 422, "bad_code")
    assert_error(
        receiver.post("/decode", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    code, other_id = foreign_code
    body = assert_error(receiver.post("/decode", content=code, headers=OCTET), 409, "foreign_model")
    assert other_id in body["detail"]
    batch = receiver.post("/decode/batch", json={"codes": [b64url(good_code), b64url(code)]})
    assert "code 1" in assert_error(batch, 409, "foreign_model")["detail"]
    assert_error(receiver.post("/decode/batch", json={"codes": []}), 400, "bad_request")
    # over LATENTWIRE_MAX_SCALE as the compose file passed it (8; the default is 16)
    limit = int(STACK_SETTINGS["LATENTWIRE_MAX_SCALE"])
    body = assert_error(
        receiver.post("/decode", params={"scale": limit + 1}, content=good_code, headers=OCTET),
        400,
        "bad_request",
    )
    assert str(limit) in body["hint"]
    assert (
        receiver.post("/decode", params={"scale": limit}, content=good_code, headers=OCTET).status_code == 200
    )


# --------------------------------------------------------------------------- each image holds one half

# Run inside a container: every *.safetensors file on its file system, with the halves its header
# declares (the latentwire metadata's "half", and the prefixes of its tensor names).
_FIND_CHECKPOINTS = r"""
import json, os, struct, sys
found = []
for top in ("/opt", "/usr", "/home", "/models", "/tmp", "/data", "/srv", "/root", "/var"):
    for root, dirs, files in os.walk(top):
        for name in files:
            if name.endswith(".safetensors"):
                path = os.path.join(root, name)
                with open(path, "rb") as fh:
                    (size,) = struct.unpack("<Q", fh.read(8))
                    header = json.loads(fh.read(size))
                meta = header.pop("__metadata__", {}) or {}
                half = json.loads(meta["latentwire"]).get("half") if "latentwire" in meta else None
                prefixes = sorted({k.split(".")[0] for k in header})
                found.append({"path": path, "half": half, "prefixes": prefixes})
json.dump(found, sys.stdout)
"""


@pytest.mark.parametrize("service", ["sender", "receiver"])
def test_container_holds_only_its_half(stack: Compose, service: str) -> None:
    own, other = {"sender": ("encoder", "decoder"), "receiver": ("decoder", "encoder")}[service]
    found = json.loads(stack.exec(service, "python3", "-", input=_FIND_CHECKPOINTS.encode()).stdout)
    assert found, f"no checkpoint at all in the {service} container"
    for item in found:
        assert other not in Path(item["path"]).name, item
        assert item["half"] == own, item
        assert other not in item["prefixes"], item


def _layer_entries(image: str) -> Iterator[tuple[str, str, IO[bytes] | None]]:
    """(layer, path, file) for every entry of every layer of ``image``, streamed from `docker image save`."""
    import subprocess

    proc = subprocess.Popen(["docker", "image", "save", image], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                if not member.isfile() or not (
                    member.name.endswith(".tar") or member.name.startswith("blobs/")
                ):
                    continue
                layer = outer.extractfile(member)
                if layer is None:
                    continue
                try:
                    with tarfile.open(fileobj=layer, mode="r|") as inner:
                        for entry in inner:
                            yield (
                                member.name,
                                entry.name,
                                inner.extractfile(entry) if entry.isfile() else None,
                            )
                except tarfile.ReadError:  # a blob that is not a layer (config, manifest)
                    continue
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)


@pytest.mark.parametrize("service", ["sender", "receiver"])
def test_no_image_layer_ever_held_the_other_half(stack: Compose, service: str) -> None:
    """Not only the final file system: no layer of the image has (or deletes) the other half's file."""
    other = OTHER_HALF[service]
    own_files: list[str] = []
    other_files: list[str] = []
    for layer, path, fh in _layer_entries(stack.image(service)):
        name = Path(path).name
        if not name.endswith(".safetensors"):
            continue
        if other in name:  # a file, or a whiteout (.wh.<name>) recording its deletion
            other_files.append(f"{layer}: {path}")
        elif fh is not None:
            size = int.from_bytes(fh.read(8), "little")
            meta = json.loads(fh.read(size)).get("__metadata__", {})
            half = json.loads(meta["latentwire"]).get("half") if "latentwire" in meta else None
            (own_files if half != other else other_files).append(f"{layer}: {path} ({half})")
    assert not other_files, other_files
    assert own_files, f"the {service} image holds no checkpoint"


# --------------------------------------------------------------------------- a receiver crash


def _kill_server_process(stack: Compose, service: str) -> None:
    """SIGKILL the service's Python process inside its container, as a crash would."""
    script = (
        "import os, signal\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        f"    if int(pid) > 1 and any(a.endswith(b'latentwire-{service}') for a in argv[:2]):\n"
        "        os.kill(int(pid), signal.SIGKILL); print(pid)\n"
    )
    killed = stack.exec(service, "python3", "-c", script).stdout.decode().split()
    assert killed, f"found no latentwire-{service} process to kill"


def test_receiver_crash_and_restart(stack: Compose, good_code: bytes) -> None:
    """A client keeps decoding while the receiver's process is killed: the restart policy brings it
    back, requests succeed again once it is healthy, and no response is ever a wrong image. In
    between, the gateway answers 502 "unavailable" (its only receiver replica refuses connections)
    or 504 "timeout" (the restarting container's address does not answer), or the replica its 503."""
    url = stack.url("receiver")
    with httpx.Client(base_url=url, timeout=10) as client:
        expected = client.post("/decode", content=good_code, headers=OCTET).content
    outcomes: list[tuple[float, str]] = []  # (time, "ok" | "wrong" | "status NNN" | "error Name")
    stop = threading.Event()

    def keep_sending() -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post("/decode", content=good_code, headers=OCTET)
                except httpx.TransportError as exc:
                    outcomes.append((time.monotonic(), f"error {type(exc).__name__}"))
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    outcomes.append((time.monotonic(), "ok" if response.content == expected else "wrong"))
                else:
                    outcomes.append((time.monotonic(), f"status {response.status_code}"))
                time.sleep(0.01)

    restarts = stack.inspect("receiver")["RestartCount"]
    thread = threading.Thread(target=keep_sending, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        _kill_server_process(stack, "receiver")
        deadline = time.monotonic() + 120
        while stack.inspect("receiver")["RestartCount"] == restarts:
            assert time.monotonic() < deadline, "the receiver was not restarted"
            time.sleep(0.2)
        stack.wait_healthy("receiver")
        healthy_at = time.monotonic()
        while sum(1 for t, o in outcomes if t > healthy_at and o == "ok") < 20:
            assert time.monotonic() < healthy_at + 30, "no successful requests after the restart"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)

    kinds = {o for _, o in outcomes}
    assert "wrong" not in kinds, "a response carried a wrong image"
    assert not {
        k for k in kinds if k.startswith("status") and k not in ("status 502", "status 503", "status 504")
    }, kinds
    assert any(o != "ok" for _, o in outcomes), "the kill went unnoticed: no request failed"
    assert any(o == "ok" for t, o in outcomes if t < healthy_at), "no success before the kill"
    # and the sender was never touched
    assert stack.inspect("sender")["RestartCount"] == 0
