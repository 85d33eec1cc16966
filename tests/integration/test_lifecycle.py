"""The compose file itself: it validates, `down -v` leaves nothing behind, and the train profile
trains into the volumes that the services then serve from."""

from __future__ import annotations

import httpx
import pytest

from latentwire.data import MnistSplit, default_data_dir
from latentwire.preprocess import png_bytes
from tests.integration.conftest import IN_CI, Compose, png_pixels

pytestmark = pytest.mark.integration

NOTHING: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}
# A smoke-sized training run: the tiny preset, one epoch on 2,000 digits (~20 s on 2 cores).
TRAIN_ARGS = (
    "--preset",
    "tiny",
    "--epochs",
    "1",
    "--limit-train",
    "2000",
    "--limit-test",
    "1000",
    "--threads",
    "2",
)


@pytest.mark.parametrize("profile", [(), ("--profile", "train")], ids=["default", "train"])
def test_compose_config_validates(docker: None, profile: tuple[str, ...]) -> None:
    compose = Compose.new()
    compose(*profile, "config", "--quiet", timeout=60)


def test_down_removes_everything(built: None, compose_projects: list[Compose]) -> None:
    compose = Compose.new()
    compose_projects.append(compose)
    compose.up()
    assert compose.leftovers()["containers"], "the stack did not start"
    compose("down", "-v", "--timeout", "10", timeout=120)
    assert compose.leftovers() == NOTHING


def _model(compose: Compose, service: str) -> dict:
    with httpx.Client(base_url=compose.url(service), timeout=30) as client:
        return client.get("/v1/model").json()


def test_train_profile_then_serve_the_trained_checkpoints(
    built: None, compose_projects: list[Compose], stack: Compose, mnist_test: MnistSplit
) -> None:
    data_dir = default_data_dir()
    if (
        not (data_dir / "train-images-idx3-ubyte").exists()
        and not (data_dir / "train-images-idx3-ubyte.gz").exists()
    ):
        # The containers have no network in CI: the trainer must get MNIST from the host.
        message = f"MNIST training images not found in {data_dir} (run `python -m latentwire.data`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    shipped = _model(stack, "sender")["model_id"]

    compose = Compose.new(LATENTWIRE_MNIST_DIR=str(data_dir.resolve()))
    compose_projects.append(compose)
    compose.build("trainer")
    trained = compose("--profile", "train", "run", "--rm", "trainer", *TRAIN_ARGS, timeout=600)
    assert b"trained checkpoints installed" in trained.stdout + trained.stderr
    compose.up()

    sender, receiver = _model(compose, "sender"), _model(compose, "receiver")
    assert sender["model_id"] == receiver["model_id"] != shipped
    assert sender["preset"] == receiver["preset"] == "tiny"
    digit = mnist_test.images[0]
    with httpx.Client(timeout=30) as client:
        code = client.post(
            f"{compose.url('sender')}/encode",
            params={"preprocess": "false"},
            content=png_bytes(digit),
            headers={"Content-Type": "image/png", "Accept": "application/octet-stream"},
        )
        assert code.status_code == 200, code.text[:300]
        image = client.post(
            f"{compose.url('receiver')}/decode",
            content=code.content,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert image.status_code == 200, image.text[:300]
    assert png_pixels(image.content).shape == digit.shape

    # the train profile's volumes (the report too) go with `down -v` under that profile
    assert any(v.endswith("_report") for v in compose.leftovers()["volumes"])
    compose.down()
    assert compose.leftovers() == NOTHING
