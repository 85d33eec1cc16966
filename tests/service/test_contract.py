"""The OpenAPI documents are an exact contract, checked by schemathesis against both real services.

Real uvicorn processes on the shipped ladder; ``st run`` with every check (positive data accepted,
negative data rejected with a 4xx in the one error shape, status codes, content types, response
schemas and headers as documented), a fixed seed and a bounded number of examples per operation.
The hooks that make positive data really positive (real images, real codes) are in
test_contract_hooks.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from latentwire import bitstream
from latentwire_http.requests import B64URL_PATTERN, form_field_bytes
from latentwire_sender.main import create_app as create_sender
from latentwire_sender.settings import SenderSettings
from tests.service.conftest import Service, assert_error, service_env
from tests.service.test_contract_hooks import DATA_ENV, digit_image

pytest.importorskip("schemathesis")

ST = Path(sys.executable).parent / "st"
HOOKS = Path(__file__).with_name("test_contract_hooks.py")
SEED = 20260801
MAX_EXAMPLES = 25
RUN_DEADLINE_S = 240  # a hang, not a slow machine: each service takes well under a minute
#: Schema-invalid requests must get one of these (the 4xx of the README's error table).
NEGATIVE_STATUSES = ["400", "413", "415", "422"]
CONFIG = f"""
[checks.positive_data_acceptance]
expected-statuses = ["2xx"]

[checks.negative_data_rejection]
expected-statuses = {json.dumps(NEGATIVE_STATUSES)}
"""


@pytest.fixture(scope="module")
def levels(shipped: tuple[Service, Service]) -> list[dict[str, Any]]:
    """The sender's levels, as GET /v1/model says."""
    info = httpx.get(f"{shipped[0].url}/v1/model", timeout=10).json()
    return list(info["levels"])


@pytest.fixture(scope="module")
def contract_data(
    shipped: tuple[Service, Service], levels: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Real codes of every level (raw and in batch containers) for the hooks, made by the sender."""
    sender = shipped[0]
    digits = [digit_image("PNG", 4 + i, 6 + 2 * i, 14, 4 + i, 255, i % 2 == 1) for i in range(3)]
    served = [(level["quality"], level["denoise"]) for level in levels]
    codes, containers = [], []
    with httpx.Client(timeout=30) as client:
        for quality, denoise in served:
            params = {"quality": quality, "denoise": str(denoise).lower()}
            files = [("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(digits)]
            batch = client.post(f"{sender.url}/encode/batch", params=params, files=files)
            assert batch.status_code == 200, batch.text
            codes += [_unb64url(item["code"]) for item in batch.json()["codes"]]
            packed = client.post(
                f"{sender.url}/encode/batch",
                params=params,
                files=files,
                headers={"Accept": "application/octet-stream"},
            )
            assert packed.headers["content-type"] == bitstream.BATCH_MEDIA_TYPE
            containers.append(packed.content)
    path = tmp_path_factory.mktemp("contract") / "data.json"
    path.write_text(
        json.dumps(
            {
                "served": served,
                "codes": [base64.b64encode(c).decode() for c in codes],
                "containers": [base64.b64encode(c).decode() for c in containers],
            }
        )
    )
    return path


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def run_schemathesis(
    service: Service, data: Path, workdir: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``st run`` against the service's /openapi.json with every check: its result and run time."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(workdir / "report"),
    ]
    env = {**service_env(), "SCHEMATHESIS_HOOKS": str(HOOKS), DATA_ENV: str(data)}
    start = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=workdir, timeout=RUN_DEADLINE_S, check=False
    )
    return result, time.monotonic() - start


@pytest.mark.parametrize("name", ["sender", "receiver"])
def test_schemathesis_all_checks_pass(
    name: str, shipped: tuple[Service, Service], contract_data: Path, tmp_path: Path
) -> None:
    service = shipped[0] if name == "sender" else shipped[1]
    result, seconds = run_schemathesis(service, contract_data, tmp_path)
    output = result.stdout + result.stderr
    print(f"st run against the {name}: exit {result.returncode} in {seconds:.1f} s\n{output[-3000:]}")
    assert result.returncode == 0, f"schemathesis failed against the {name}:\n{output[-20000:]}"
    assert service.process.poll() is None, service.log()


# --------------------------------------------------------------------------- what the documents say


def _operation(spec: dict[str, Any], path: str) -> dict[str, Any]:
    operation: dict[str, Any] = spec["paths"][path]["post"]
    return operation


def _param(operation: dict[str, Any], name: str) -> dict[str, Any]:
    (param,) = [p for p in operation["parameters"] if p["name"] == name]
    return param


def test_sender_document_states_the_loaded_ladder(
    shipped: tuple[Service, Service], levels: list[dict[str, Any]]
) -> None:
    spec = httpx.get(f"{shipped[0].url}/openapi.json", timeout=10).json()
    denoising = sorted(level["quality"] for level in levels if level["denoise"])
    for path in ("/encode", "/encode/batch"):
        operation = _operation(spec, path)
        quality = _param(operation, "quality")
        assert quality["schema"]["enum"] == sorted({level["quality"] for level in levels})
        assert quality["schema"]["type"] == "integer"
        assert f"denoising levels {denoising}" in quality["description"]
        assert _param(operation, "denoise")["schema"]["type"] == "boolean"
        assert operation["requestBody"]["required"] is True
        assert sorted(operation["responses"]) == ["200", "400", "413", "415", "422", "503"]
        for status in ("400", "413", "415", "422", "503"):
            content = operation["responses"][status]["content"]
            assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert "Retry-After" in operation["responses"]["503"]["headers"]
    encode = _operation(spec, "/encode")["requestBody"]["content"]
    assert {"image/png", "image/jpeg", "multipart/form-data"} <= set(encode)
    assert encode["multipart/form-data"]["schema"]["required"] == ["file"]
    files = _operation(spec, "/encode/batch")["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert files["properties"]["files"]["minItems"] == 1
    assert files["properties"]["files"]["maxItems"] == SenderSettings().max_batch


def test_receiver_document_states_the_limits(shipped: tuple[Service, Service]) -> None:
    spec = httpx.get(f"{shipped[1].url}/openapi.json", timeout=10).json()
    for path in ("/decode", "/decode/batch"):
        operation = _operation(spec, path)
        scale = _param(operation, "scale")["schema"]
        assert (scale["minimum"], scale["maximum"]) == (1, 16)
        assert operation["requestBody"]["required"] is True
        assert sorted(operation["responses"]) == ["200", "400", "409", "413", "415", "422", "503"]
    single = _operation(spec, "/decode")["requestBody"]["content"]
    assert set(single) == {"application/octet-stream", "application/json"}
    code = single["application/json"]["schema"]["properties"]["code"]
    assert (code["minLength"], code["pattern"]) == (1, B64URL_PATTERN)
    batch = _operation(spec, "/decode/batch")["requestBody"]["content"]
    assert set(batch) == {"application/json", bitstream.BATCH_MEDIA_TYPE}
    codes = batch["application/json"]["schema"]["properties"]["codes"]
    assert (codes["minItems"], codes["maxItems"]) == (1, 1024)
    assert codes["items"]["pattern"] == code["pattern"]


def test_an_app_built_before_its_ladder_documents_any_level() -> None:
    """Lazy loading (tests only): the document cannot know the levels, so it says 0…15."""
    spec = create_sender(SenderSettings()).openapi()
    quality = _param(_operation(spec, "/encode"), "quality")["schema"]
    assert "enum" not in json.dumps(quality)
    assert '"maximum": 15' in json.dumps(quality)


# --------------------------------------------------------------------------- quality and denoise


def test_denoise_without_quality_picks_the_denoising_level(
    shipped: tuple[Service, Service], levels: list[dict[str, Any]]
) -> None:
    (denoising,) = [level["quality"] for level in levels if level["denoise"]]
    image = digit_image("PNG", 4, 10, 16, 6, 255, False)
    response = httpx.post(
        f"{shipped[0].url}/encode",
        params={"denoise": "true"},
        content=image,
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["quality"] == denoising


def test_denoise_at_a_level_without_a_denoiser_is_a_documented_400(
    shipped: tuple[Service, Service], levels: list[dict[str, Any]]
) -> None:
    denoising = sorted(level["quality"] for level in levels if level["denoise"])
    plain_only = sorted({level["quality"] for level in levels} - set(denoising))
    image = digit_image("PNG", 4, 10, 16, 6, 255, False)
    for quality in plain_only:
        response = httpx.post(
            f"{shipped[0].url}/encode",
            params={"quality": quality, "denoise": "true"},
            content=image,
            headers={"Content-Type": "image/png"},
            timeout=30,
        )
        body = assert_error(response, 400, "bad_request")
        assert str(denoising) in body["hint"]


# --------------------------------------------------------------------------- parts without a filename


def _multipart(parts: list[tuple[str, bytes, str | None]], charset: str | None = None) -> tuple[bytes, str]:
    """A multipart body of (field name, content, filename or None) parts, and its Content-Type."""
    boundary = "contract-boundary"
    body = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}" + (f"; charset={charset}" if charset else "")


@pytest.mark.parametrize("charset", [None, "utf-8", "latin-1"])
@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n\x00\xff", "digit é ✓".encode(), "é".encode("latin-1"), b"plain", bytes(range(256))],
    ids=["png-like", "utf8", "latin1", "ascii", "all-bytes"],
)
@pytest.mark.anyio
async def test_a_part_without_filename_arrives_byte_for_byte(content: bytes, charset: str | None) -> None:
    """RFC 7578 makes a part's filename optional: starlette reads such a part as text, and
    ``form_field_bytes`` gives back the bytes that were sent."""
    body, content_type = _multipart([("file", content, None)], charset)
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
    request = Request(scope, receive)
    form = await request.form()
    (text,) = form.getlist("file")
    assert isinstance(text, str)
    assert form_field_bytes(request, text) == content


@pytest.mark.parametrize("path", ["/encode", "/encode/batch"])
def test_an_image_part_without_filename_is_encoded(shipped: tuple[Service, Service], path: str) -> None:
    image = digit_image("PNG", 4, 10, 16, 6, 255, False)
    field = "file" if path == "/encode" else "files"
    raw = httpx.post(
        f"{shipped[0].url}/encode", content=image, headers={"Content-Type": "image/png"}, timeout=30
    )
    body, content_type = _multipart([(field, image, None)])
    response = httpx.post(
        f"{shipped[0].url}{path}", content=body, headers={"Content-Type": content_type}, timeout=30
    )
    assert response.status_code == 200, response.text
    code = response.json()["code"] if path == "/encode" else response.json()["codes"][0]["code"]
    assert code == raw.json()["code"]
