"""The browser demo: the sender serves it at /demo/, and a real headless Chromium drives it.

In process (no browser): where the page is served, that it stays out of the OpenAPI document,
the metrics' route labels and the API keys. In the browser (Debian's chromium through
Playwright, tests/browser.py): the page as the sender serves it, calling the shipped-ladder
sender and a receiver that allows the sender's origin (CORS); a digit drawn with the mouse, a
file, the quality levels, the services' errors, a phone-sized viewport, labels and the keyboard.

Screenshots go to ``$LATENTWIRE_SCREENSHOT_DIR`` when it is set. Without chromium the browser
tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image
from pydantic import SecretStr

import latentwire
from latentwire.ladder import EncoderLadder
from latentwire.preprocess import load_digit
from latentwire_demo import STATIC_DIR
from latentwire_sender.main import DEMO_PATH
from latentwire_sender.main import create_app as create_sender
from latentwire_sender.settings import SenderSettings
from tests.browser import (
    choose_file,
    chromium_browser,
    demo_url,
    draw_digit,
    expect_result,
    has_horizontal_overflow,
    open_demo,
    quality_levels,
    read_result,
    require_chromium,
    screenshot,
    select_quality,
)
from tests.service.conftest import Service, assert_error, start_services

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

SAMPLE = Path(latentwire.__file__).parent / "samples" / "mnist-test-0.png"
NOT_AN_IMAGE = ("x.png", "image/png", b"this is a text file, not a PNG\n")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class InProcess:
    """A synchronous client of an app in process (no lifespan: the static files and the key
    check need none); redirects are not followed unless asked."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return anyio.run(go)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


# --------------------------------------------------------------------------- served by the sender


@pytest.fixture
def demo_app(encoder_ladder: EncoderLadder) -> FastAPI:
    return create_sender(SenderSettings(), ladder=encoder_ladder)


def test_the_page_and_its_assets_are_served(demo_app: FastAPI) -> None:
    client = InProcess(demo_app)
    page = client.get(f"{DEMO_PATH}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="canvas"' in page.text and 'role="alert"' in page.text
    for name, kind in [("demo.js", "javascript"), ("demo.css", "text/css"), ("index.html", "text/html")]:
        asset = client.get(f"{DEMO_PATH}/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert asset.content == (STATIC_DIR / name).read_bytes()
    # the page's own assets by relative URL: it works under /demo/ and at the gateway's /
    assert 'href="demo.css"' in page.text and 'src="demo.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external resources


def test_demo_without_slash_redirects_keeping_the_query(demo_app: FastAPI) -> None:
    client = InProcess(demo_app)
    bare = client.get(DEMO_PATH)
    assert bare.status_code == 307 and bare.headers["location"] == "demo/"  # relative: works behind a proxy
    query = client.get(DEMO_PATH, params={"sender": "http://a:1", "receiver": "http://b:2"})
    assert query.headers["location"] == "demo/?sender=http%3A%2F%2Fa%3A1&receiver=http%3A%2F%2Fb%3A2"
    followed = InProcess(demo_app).get(f"{DEMO_PATH}?sender=x", follow_redirects=True)
    assert followed.status_code == 200 and str(followed.url).endswith("/demo/?sender=x")


def test_a_missing_file_is_the_json_404(demo_app: FastAPI) -> None:
    client = InProcess(demo_app)
    assert_error(client.get(f"{DEMO_PATH}/nope.js"), 404, "http_error")
    assert_error(client.post(f"{DEMO_PATH}/", content=b"x"), 405, "http_error")


def test_the_demo_stays_out_of_the_document_and_the_metrics_labels(demo_app: FastAPI) -> None:
    assert not [path for path in demo_app.openapi()["paths"] if path.startswith(DEMO_PATH)]
    client = InProcess(demo_app)
    for path in (DEMO_PATH, f"{DEMO_PATH}/", f"{DEMO_PATH}/demo.js", f"{DEMO_PATH}/nope"):
        client.get(path)
    metrics = client.get("/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("latentwire_http_requests_total{")]
    demo = sorted(line.split("{")[1].split("}")[0] for line in lines if 'route="/demo"' in line)
    assert demo == [
        'method="GET",route="/demo",status="200"',
        'method="GET",route="/demo",status="307"',
        'method="GET",route="/demo",status="404"',
    ], lines
    assert not [line for line in lines if "unmatched" in line], lines


def test_the_demo_is_open_without_keys_but_its_requests_are_not(encoder_ladder: EncoderLadder) -> None:
    app = create_sender(SenderSettings(api_keys=SecretStr("k-1")), ladder=encoder_ladder)
    client = InProcess(app)
    assert client.get(DEMO_PATH).status_code == 307
    assert client.get(f"{DEMO_PATH}/").status_code == 200
    assert client.get(f"{DEMO_PATH}/demo.js").status_code == 200
    assert_error(client.get("/v1/model"), 401, "unauthorized")
    assert_error(client.post("/encode", content=b"x"), 401, "unauthorized")
    assert_error(client.get("/demo-not"), 401, "unauthorized")
    assert client.get("/v1/model", headers={"X-API-Key": "k-1"}).status_code == 200


def test_a_path_climbing_out_of_the_demo_is_not_open(encoder_ladder: EncoderLadder) -> None:
    """The router does not normalize paths; the key check refuses /demo/../ paths anyway."""
    app = create_sender(SenderSettings(api_keys=SecretStr("k-1")), ladder=encoder_ladder)
    answers: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        answers.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": f"{DEMO_PATH}/../v1/model",
        "raw_path": f"{DEMO_PATH}/../v1/model".encode(),
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "state": {},
    }

    async def call() -> None:
        await app(scope, receive, send)

    anyio.run(call)
    assert answers[0]["type"] == "http.response.start" and answers[0]["status"] == 401


def test_the_demo_setting_turns_it_off(
    encoder_ladder: EncoderLadder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTWIRE_SENDER_DEMO", "false")
    settings = SenderSettings()
    assert settings.demo is False
    client = InProcess(create_sender(settings, ladder=encoder_ladder))
    assert_error(client.get(f"{DEMO_PATH}/"), 404, "http_error")
    assert_error(client.get(DEMO_PATH), 404, "http_error")


# --------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def demo_services(
    shipped: tuple[Service, Service], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service]]:
    """The shipped-ladder sender (it serves the page) and a receiver that allows its origin."""
    sender = shipped[0]
    (receiver,) = start_services(
        [("receiver", "--decoder", None, {"LATENTWIRE_RECEIVER_CORS_ORIGINS": sender.url})],
        tmp_path_factory.mktemp("demo-logs"),
    )
    yield sender, receiver
    receiver.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with chromium_browser() as launched:
        yield launched


@pytest.fixture
def page_url(demo_services: tuple[Service, Service]) -> str:
    sender, receiver = demo_services
    return demo_url(f"{sender.url}{DEMO_PATH}/", sender=sender.url, receiver=receiver.url)


def is_post(path: str) -> Any:
    return lambda response: response.request.method == "POST" and urlparse(response.url).path == path


def shot(page: Page, name: str) -> None:
    """A screenshot into $LATENTWIRE_SCREENSHOT_DIR, when it is set."""
    directory = os.environ.get("LATENTWIRE_SCREENSHOT_DIR")
    if directory:
        screenshot(page, Path(directory) / name)


def shown_bytes(page: Page, image: str) -> bytes:
    """The bytes of the file an <img> of the page shows (its blob: URL, read in the page)."""
    values: list[int] = page.eval_on_selector(
        image, "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"
    )
    return bytes(values)


def test_a_drawn_digit_shows_its_code_and_both_images(
    browser: Browser, page_url: str, demo_services: tuple[Service, Service]
) -> None:
    page = open_demo(browser, page_url)
    assert quality_levels(page) == [0, 1, 2, 3, 4, 5, 6]
    assert page.input_value("#quality") == "4"  # the sender's default level
    with (
        page.expect_response(is_post("/encode")) as encoded_info,
        page.expect_response(is_post("/decode")) as decoded_info,
        expect_result(page),
    ):
        draw_digit(page, "7")
    encoded: Response = encoded_info.value
    assert encoded.status == 200, encoded.text()
    query = parse_qs(urlparse(encoded.url).query)
    assert query == {"quality": ["4"], "input": ["true"]}
    answer = encoded.json()
    code, input_png = b64url_decode(answer["code"]), b64url_decode(answer["input"])

    shown = read_result(page)
    assert shown.state == "done" and shown.error == "", shown
    assert shown.code_bytes == len(code) == answer["bytes"]
    assert shown.code_hex == code.hex() and shown.code_b64 == answer["code"]
    assert shown.png_bytes == len(input_png)
    assert shown.quality == answer["quality"] == 4
    assert shown.input_loaded and shown.input_width == 28, shown
    assert shown.reconstruction_loaded and shown.reconstruction_width == 28, shown
    with Image.open(io.BytesIO(input_png)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        assert np.asarray(image).max() > 128  # the drawn strokes, white on black

    # the images shown are the sender's input PNG, and the receiver's answer to exactly this code
    decoded: Response = decoded_info.value
    assert decoded.status == 200 and decoded.request.post_data_buffer == code
    again = httpx.post(
        f"{demo_services[1].url}/decode",
        content=code,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert shown_bytes(page, "#reconstruction") == again.content
    assert shown_bytes(page, "#encoded-input") == input_png
    shot(page, "demo-drawn.png")
    page.context.close()


def test_another_quality_level_encodes_the_digit_again(browser: Browser, page_url: str) -> None:
    page = open_demo(browser, page_url)
    with expect_result(page):
        draw_digit(page, "4")
    sizes = {}
    for level in (1, 5):
        with page.expect_response(is_post("/encode")) as info, expect_result(page):
            select_quality(page, level)
        assert parse_qs(urlparse(info.value.url).query)["quality"] == [str(level)]
        shown = read_result(page)
        assert shown.state == "done" and shown.quality == level, shown
        assert shown.code_bytes == info.value.json()["bytes"] == len(shown.code)
        assert shown.reconstruction_loaded
        sizes[level] = shown.code_bytes
    assert sizes[1] < sizes[5], sizes  # the levels' point: more bytes buy quality
    page.context.close()


def test_a_chosen_file_is_encoded(browser: Browser, page_url: str) -> None:
    page = open_demo(browser, page_url)
    with page.expect_response(is_post("/encode")) as info, expect_result(page):
        choose_file(page, SAMPLE)
    shown = read_result(page)
    assert shown.state == "done" and shown.input_loaded and shown.reconstruction_loaded, shown
    input_png = b64url_decode(info.value.json()["input"])
    assert shown.png_bytes == len(input_png)
    # the sender's own preprocessing of the file, not a second one in the page
    with Image.open(io.BytesIO(input_png)) as image:
        assert np.array_equal(np.asarray(image), load_digit(SAMPLE.read_bytes()))
    page.context.close()


def test_a_bad_file_shows_the_senders_error(browser: Browser, page_url: str) -> None:
    page = open_demo(browser, page_url)
    with expect_result(page):
        draw_digit(page, "1")
    assert read_result(page).state == "done"
    with page.expect_response(is_post("/encode")) as info, expect_result(page):
        choose_file(page, NOT_AN_IMAGE)
    refused = info.value
    assert refused.status == 422
    body = refused.json()
    shown = read_result(page)
    assert shown.state == "error"
    assert body["detail"] in shown.error and body["hint"] in shown.error and "422" in shown.error
    assert page.get_attribute("#error", "role") == "alert"
    # no code of the earlier digit beside this file's error
    assert shown.code_bytes is None and not shown.input_loaded and not shown.reconstruction_loaded
    shot(page, "demo-error.png")
    page.context.close()


def test_a_receiver_that_does_not_allow_the_origin_is_a_readable_error(
    browser: Browser, shipped: tuple[Service, Service]
) -> None:
    """The shipped receiver has no CORS setting: the browser refuses to read its answer."""
    sender, receiver = shipped
    page = open_demo(browser, demo_url(f"{sender.url}{DEMO_PATH}/", sender=sender.url, receiver=receiver.url))
    with expect_result(page):
        draw_digit(page, "7")
    shown = read_result(page)
    assert shown.state == "error" and shown.code_bytes is not None, shown  # the code came back
    assert "Could not reach the receiver" in shown.error, shown.error
    assert "LATENTWIRE_RECEIVER_CORS_ORIGINS" in shown.error, shown.error
    page.context.close()


def test_without_parameters_the_page_asks_for_the_gateways_paths(
    browser: Browser, demo_services: tuple[Service, Service]
) -> None:
    """Served by the sender without ?sender=: /sender/v1/model is not there; the page says what to do."""
    page = open_demo(browser, f"{demo_services[0].url}{DEMO_PATH}/")
    error = page.inner_text("#error")
    assert "404" in error and "/sender/v1/model" in error and "?sender=URL" in error, error
    page.context.close()


def test_a_phone_viewport_does_not_scroll_sideways(browser: Browser, page_url: str) -> None:
    page = open_demo(browser, page_url, viewport=(360, 640))
    assert not has_horizontal_overflow(page)
    with expect_result(page):
        draw_digit(page, "0")
    assert read_result(page).state == "done"
    with expect_result(page):
        select_quality(page, 0)  # the tutorial's 1,583-byte code: its hex must wrap, not overflow
    shown = read_result(page)
    assert shown.state == "done" and (shown.code_bytes or 0) > 1000, shown
    assert not has_horizontal_overflow(page)
    shot(page, "demo-phone.png")
    with expect_result(page):
        choose_file(page, NOT_AN_IMAGE)  # a long error message wraps too
    assert read_result(page).state == "error"
    assert not has_horizontal_overflow(page)
    with expect_result(page):
        select_quality(page, 4)  # a level change sends the (bad) file again
    assert read_result(page).state == "error"
    page.context.close()


def test_controls_are_labelled_and_usable_from_the_keyboard(browser: Browser, page_url: str) -> None:
    page = open_demo(browser, page_url)
    for label, element_id in [
        ("Quality level", "quality"),
        ("Or choose an image file", "file"),
        ("API key (only when the services require one)", "api-key"),
    ]:
        assert page.get_by_label(label, exact=True).get_attribute("id") == element_id
    assert (page.get_attribute("#canvas", "aria-label") or "").startswith("Drawing area")
    assert page.get_attribute("#canvas", "aria-describedby") == "canvas-help"
    for name in ("Clear", "Draw an example"):
        assert page.get_by_role("button", name=name, exact=False).count() == 1
    for image in ("#encoded-input", "#reconstruction"):
        assert page.get_attribute(image, "alt")
    assert page.get_attribute("#status", "role") == "status"

    # keyboard only: Tab to "Draw an example", Enter; then another level with the arrow keys
    page.focus("#clear")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "example"
    with expect_result(page):
        page.keyboard.press("Enter")
    first = read_result(page)
    assert first.state == "done" and first.reconstruction_loaded, first
    page.focus("#quality")
    with expect_result(page):
        page.keyboard.press("ArrowUp")
    assert read_result(page).quality == 3
    page.focus("#clear")
    page.keyboard.press("Enter")
    cleared = read_result(page)
    assert cleared.state == "idle" and cleared.code_bytes is None and not cleared.reconstruction_loaded
    page.context.close()


def test_with_api_keys_the_page_sends_the_key_to_its_own_origin_only(
    browser: Browser, encoder_only_dir: Path, decoder_only_dir: Path, tmp_path: Path
) -> None:
    """Services with keys: the page loads (it is open), its requests get 401 until a key is typed;
    then the sender on the page's own origin answers, while the receiver on another origin gets
    no key (a link's ?receiver= must not collect one) and says 401."""
    (sender,) = start_services(
        [("sender", "--encoder", encoder_only_dir, {"LATENTWIRE_SENDER_API_KEYS": "demo-key"})], tmp_path
    )
    try:
        receiver_env = {
            "LATENTWIRE_RECEIVER_API_KEYS": "demo-key",
            "LATENTWIRE_RECEIVER_CORS_ORIGINS": sender.url,
        }
        (receiver,) = start_services([("receiver", "--decoder", decoder_only_dir, receiver_env)], tmp_path)
        try:
            page = open_demo(
                browser, demo_url(f"{sender.url}{DEMO_PATH}/", sender=sender.url, receiver=receiver.url)
            )
            error = page.inner_text("#error")
            assert "401 unauthorized" in error and "API key field" in error, error
            page.click("summary")
            page.fill("#api-key", "demo-key")
            to_receiver = lambda r: r.url.startswith(receiver.url) and r.method == "POST"  # noqa: E731
            with page.expect_request(to_receiver) as sent, expect_result(page):
                page.keyboard.press("Tab")  # the key's change event: the levels, and nothing to send yet
                draw_digit(page, "1")
            assert "x-api-key" not in sent.value.headers
            shown = read_result(page)
            assert quality_levels(page) == [0]  # the sender answered with the key: the test checkpoint
            assert shown.code_bytes, shown  # the code came back from the sender
            assert shown.state == "error" and "receiver" in shown.error and "401" in shown.error, shown
            page.context.close()
        finally:
            receiver.stop()
    finally:
        sender.stop()
