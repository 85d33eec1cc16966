"""What the images install: each exactly the closure of its process's extra of pyproject.toml
(latentwire[sender], [receiver], [train], [client]), and torch in layers that all four share.

The images are run with `docker run --rm --network none`, their entry point replaced by python3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.integration.conftest import Compose, run

pytestmark = pytest.mark.integration

IMAGES = ("sender", "receiver", "trainer", "client")
EXTRA = {"sender": "sender", "receiver": "receiver", "trainer": "train", "client": "client"}
# What each process needs (True: importable) and what it must not get (False: ModuleNotFoundError).
IMPORTS = {
    "sender": {
        "latentwire_sender.main": True,
        "fastapi": True,
        "uvicorn": True,
        "uvloop": True,
        "httptools": True,
        "pydantic_settings": True,
        "python_multipart": True,
        "tqdm": False,
        "httpx": False,
    },
    "receiver": {
        "latentwire_receiver.main": True,
        "fastapi": True,
        "uvicorn": True,
        "uvloop": True,
        "httptools": True,
        "pydantic_settings": True,
        "python_multipart": False,
        "tqdm": False,
        "httpx": False,
    },
    "trainer": {
        "latentwire_trainer.train": True,
        "tqdm": True,
        "fastapi": False,
        "uvicorn": False,
        "pydantic_settings": False,
        "python_multipart": False,
        "httpx": False,
    },
    # The client keeps torch: latentwire_client.cli imports latentwire.errors and
    # latentwire.preprocess, and the latentwire package's __init__ imports its codec (torch).
    "client": {
        "latentwire_client.cli": True,
        "httpx": True,
        "fastapi": False,
        "uvicorn": False,
        "python_multipart": False,
        "tqdm": False,
    },
}
# In no image: installers, test and evaluation tools.
NOWHERE = ("pip", "setuptools", "pytest", "hypothesis", "matplotlib", "skimage")
# torch declares setuptools (to build C++ extensions); the images leave it out on purpose.
LEFT_OUT = {"setuptools"}
# Each image's own layers (everything not shared with another image) stay small: torch and the
# model package's other dependencies (~780 MB) are in layers that all four share.
UNIQUE_LIMIT_BYTES = 100_000_000

# Run inside an image: every installed distribution with its requirements, and for each module
# named on the command line None (imported) or the exception's type and message.
_INVENTORY = r"""
import importlib, importlib.metadata as md, json, sys
dists = {d.metadata["Name"]: d.requires or [] for d in md.distributions()}
imports = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        imports[name] = None
    except Exception as exc:
        imports[name] = [type(exc).__name__, getattr(exc, "name", None) or "", str(exc)]
json.dump({"dists": dists, "imports": imports}, sys.stdout)
"""


def _images(compose: Compose) -> dict[str, str]:
    out = compose("--profile", "train", "--profile", "client", "config", "--format", "json", timeout=60)
    services = json.loads(out.stdout)["services"]
    return {service: str(services[service]["image"]) for service in IMAGES}


@pytest.fixture(scope="module")
def images(built: None) -> dict[str, str]:
    """All four images (the session builds the sender and the receiver; this adds the others)."""
    compose = Compose.new()
    compose.build("trainer", "client")
    return _images(compose)


@pytest.fixture(scope="module")
def inventory(images: dict[str, str]) -> dict[str, dict[str, Any]]:
    modules = sorted(
        {m for table in IMPORTS.values() for m in table} | set(NOWHERE) | {"torch", "latentwire"}
    )
    found = {}
    for service, image in images.items():
        proc = run(
            ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
             "-c", _INVENTORY, *modules],
            timeout=180,
        )  # fmt: skip
        found[service] = json.loads(proc.stdout)
    return found


def _closure(dists: dict[str, list[str]], roots: Iterable[tuple[str, set[str]]]) -> set[str]:
    """Names (canonical) of every distribution that ``roots`` (name, extras) need, transitively,
    going by the requirements that the installed distributions declare."""
    requires = {canonicalize_name(name): reqs for name, reqs in dists.items()}
    needed: set[str] = set()
    todo = [(canonicalize_name(name), extras) for name, extras in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        needed.add(name)
        for line in requires.get(name, []):
            req = Requirement(line)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((canonicalize_name(req.name), set(req.extras)))
    return needed


@pytest.mark.parametrize("service", IMAGES)
def test_image_installs_exactly_its_extra(inventory: dict[str, dict[str, Any]], service: str) -> None:
    """Every distribution in the image is needed by latentwire[<its extra>], and every one that is
    needed is there (but setuptools, left out on purpose)."""
    dists = inventory[service]["dists"]
    installed = {canonicalize_name(name) for name in dists}
    needed = _closure(dists, [("latentwire", {EXTRA[service]})])
    assert not needed - installed - LEFT_OUT, f"{service}: missing {sorted(needed - installed - LEFT_OUT)}"
    assert not installed - needed, (
        f"{service}: not needed by latentwire[{EXTRA[service]}]: {sorted(installed - needed)}"
    )


@pytest.mark.parametrize("service", IMAGES)
def test_image_imports(inventory: dict[str, dict[str, Any]], service: str) -> None:
    imports = inventory[service]["imports"]
    expected = {"torch": True, "latentwire": True, **IMPORTS[service], **dict.fromkeys(NOWHERE, False)}
    for module, present in expected.items():
        outcome = imports[module]
        if present:
            assert outcome is None, f"{service}: import {module} failed: {outcome}"
        else:
            assert outcome is not None, f"{service}: {module} is importable, but the image should not have it"
            kind, missing, message = outcome
            # not there at all, rather than there but broken
            assert kind == "ModuleNotFoundError" and module.startswith(missing), (service, module, message)


def _bytes(size: str) -> float:
    """`docker system df` sizes: 0B, 512kB, 4.597MB, 1.2GB (decimal units)."""
    match = re.fullmatch(r"([0-9.]+)\s*([kMGT]?B)", size.strip())
    assert match, size
    return float(match[1]) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[match[2]]


def test_images_share_the_torch_layers(images: dict[str, str]) -> None:
    """The four images start with the same layers (the base image, torch's venv), and what each
    has on its own is small: torch is stored once, not in every image."""
    layers = {}
    for service, image in images.items():
        out = run(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", image], timeout=30)
        layers[service] = json.loads(out.stdout)
    common = 0
    while (
        all(len(ls) > common for ls in layers.values()) and len({ls[common] for ls in layers.values()}) == 1
    ):
        common += 1
    assert common >= 3, f"the images share only their first {common} layers: {layers}"

    out = run(["docker", "system", "df", "-v", "--format", "{{json .Images}}"], timeout=120)
    rows = {f"{row['Repository']}:{row['Tag']}": row for row in json.loads(out.stdout)}
    for service, image in images.items():
        row = rows[image]
        unique, size = _bytes(row["UniqueSize"]), _bytes(row["Size"])
        assert unique <= UNIQUE_LIMIT_BYTES, (
            f"{service}: {row['UniqueSize']} of {row['Size']} in no other image"
        )
        assert size - unique >= 0.8 * size, (service, row)


def test_in_container_ports_stay_fixed(images: dict[str, str]) -> None:
    """The services listen on 8001 and 8002 in their containers, and the compose file hands them
    no *_PORT or *_HOST setting that would move them (the gateway finds them there); they publish
    nothing: LATENTWIRE_GATEWAY_PORT is the one host port, the gateway's 8080."""
    compose = Compose.new()
    config = json.loads(compose("config", "--format", "json", timeout=60).stdout)["services"]
    for service, port in (("sender", 8001), ("receiver", 8002)):
        env = config[service].get("environment") or {}
        assert not {k for k in env if k.endswith(("_PORT", "_HOST"))}, (service, sorted(env))
        assert not config[service].get("ports"), (service, config[service].get("ports"))
        out = run(["docker", "image", "inspect", "-f", "{{json .Config.Env}}", images[service]], timeout=30)
        assert f"LATENTWIRE_PORT={port}" in json.loads(out.stdout)
    published = config["gateway"]["ports"]
    assert [(p["host_ip"], p["target"]) for p in published] == [("127.0.0.1", 8080)], published
    assert str(published[0]["published"]) == compose.env["LATENTWIRE_GATEWAY_PORT"]


def test_settings_pass_through_under_their_own_names(docker: None) -> None:
    """A LATENTWIRE_SENDER_* / LATENTWIRE_RECEIVER_* setting reaches its own container only, under
    the same name; a shared LATENTWIRE_* one reaches both."""
    settings = {
        "LATENTWIRE_SENDER_MAX_BATCH": "17",
        "LATENTWIRE_SENDER_DECODE_THREADS": "3",
        "LATENTWIRE_SENDER_MAX_INFLIGHT_BODY_BYTES": "123456",
        "LATENTWIRE_RECEIVER_MAX_BATCH": "19",
        "LATENTWIRE_RECEIVER_BATCH_SIZE": "8",
        "LATENTWIRE_LOG_LEVEL": "warning",
        "LATENTWIRE_TORCH_THREADS": "2",
    }
    compose = Compose.new(**settings)
    config = json.loads(compose("config", "--format", "json", timeout=60).stdout)["services"]
    sender, receiver = config["sender"]["environment"], config["receiver"]["environment"]
    for name, value in settings.items():
        if name.startswith("LATENTWIRE_SENDER_"):
            assert sender[name] == value and name not in receiver, name
        elif name.startswith("LATENTWIRE_RECEIVER_"):
            assert receiver[name] == value and name not in sender, name
        else:
            assert sender[name] == receiver[name] == value, name
    # the compose file gives the services at least their graceful timeout (10 s) to stop
    for service in ("sender", "receiver"):
        grace = config[service]["stop_grace_period"]
        assert _seconds(grace) > 10, (service, grace)


def _seconds(duration: str) -> float:
    """A compose duration: 15s, 1m30s."""
    total = 0.0
    for amount, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total
