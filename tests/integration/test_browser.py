"""The browser demo through the gateway, in a real headless Chromium (Debian's, driven by
Playwright: tests/browser.py): the page the gateway serves at ``/`` calls ``/sender/…`` and
``/receiver/…`` on the same origin, under the gateway's Content-Security-Policy.

It draws a digit with the mouse and checks what the page shows against what the sender answered;
a file that is not an image shows the sender's error. A screenshot of the result goes to
``$LATENTWIRE_SCREENSHOT_DIR``, else build/screenshots/ (docs/images/demo.png in the README is
one, taken with the stack on its default port). Without
chromium the test skips, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.browser import (
    choose_file,
    chromium_browser,
    draw_digit,
    expect_result,
    open_demo,
    quality_levels,
    read_result,
    require_chromium,
    screenshot,
)
from tests.integration.conftest import Compose, from_b64

pytestmark = pytest.mark.integration

NOT_AN_IMAGE = ("x.png", "image/png", b"this is a text file, not a PNG\n")
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`));
"""
# Where the screenshot of the page with its result goes (build/ is ignored by git).
SCREENSHOTS = Path(
    os.environ.get("LATENTWIRE_SCREENSHOT_DIR")
    or Path(__file__).resolve().parents[2] / "build" / "screenshots"
)


def test_demo_page_through_the_gateway(stack: Compose) -> None:
    require_chromium()
    with chromium_browser() as browser:
        # Every Content-Security-Policy violation, from the first byte of the page on.
        page = open_demo(browser, stack.url() + "/", init_scripts=[CSP_WATCH])
        # The levels come from the sender's /v1/model, through /sender/v1/model.
        with httpx.Client(base_url=stack.url("sender"), timeout=30) as sender:
            served = sender.get("/v1/model").json()["levels"]
        levels = sorted({level["quality"] for level in served if not level["denoise"]})
        assert quality_levels(page) == levels

        with page.expect_response(lambda r: "/sender/encode" in r.url) as answered, expect_result(page):
            draw_digit(page, "7")
        response = answered.value
        assert response.status == 200, response.text()
        body = response.json()
        code, encoded_input = from_b64(body["code"]), from_b64(body["input"])
        shown = read_result(page)
        assert shown.state == "done", shown
        assert shown.code_bytes == len(code) == body["bytes"]
        assert shown.code_hex == code.hex()
        assert shown.png_bytes == len(encoded_input)
        assert shown.input_loaded and shown.reconstruction_loaded, shown
        assert shown.reconstruction_width == shown.input_width == 28
        assert not shown.error
        screenshot(page, SCREENSHOTS / "demo-gateway.png")

        # A file that is not an image: the sender's own error, readable, in the alert region.
        with expect_result(page):
            choose_file(page, NOT_AN_IMAGE)
        shown = read_result(page)
        assert shown.state == "error", shown
        assert "not a recognized image" in shown.error, shown.error
        violations = page.evaluate("() => window.cspViolations")
        assert violations == [], violations
