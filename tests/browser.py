"""Driving the browser demo (services/demo/static) in a real headless Chromium, with Playwright.

Importable by any test level: tests/service/test_demo.py drives the page the sender serves at
``/demo/``; an integration test can drive the gateway's ``/`` the same way::

    with chromium_browser() as browser:
        page = open_demo(browser, f"{sender.url}/demo/?sender={sender.url}&receiver={receiver.url}")
        with expect_result(page):
            draw_digit(page, "7")
        shown = read_result(page)   # code_bytes, code_hex, png_bytes, images loaded, error
        screenshot(page, "demo.png")

Playwright's own browser download is not used (it is blocked where these tests run): the
browser is Debian's ``chromium`` (``apt-get install chromium``), found on ``PATH`` or at
/usr/bin/chromium, or at ``$LATENTWIRE_CHROMIUM``. Without one ``require_chromium`` skips the
test, except under ``CI=true``, where it fails with what to install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FilePayload, Page

__all__ = [
    "DIGITS",
    "RESULT_TIMEOUT_MS",
    "DemoResult",
    "choose_file",
    "chromium_browser",
    "chromium_path",
    "demo_url",
    "draw_digit",
    "draw_strokes",
    "expect_result",
    "has_horizontal_overflow",
    "open_demo",
    "quality_levels",
    "read_result",
    "require_chromium",
    "result_count",
    "screenshot",
    "select_quality",
]

#: How long a result (encode, decode and both images) may take: generous on a busy 2-core machine.
RESULT_TIMEOUT_MS = 30_000
DESKTOP = (1100, 720)
CHROMIUM_ENV = "LATENTWIRE_CHROMIUM"

#: Digits as strokes of points in 0…1 coordinates of the drawing area (x right, y down).
DIGITS: dict[str, list[list[tuple[float, float]]]] = {
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.82)]],
    "1": [[(0.42, 0.28), (0.55, 0.16), (0.55, 0.84)]],
    "4": [[(0.58, 0.16), (0.27, 0.6), (0.75, 0.6)], [(0.6, 0.35), (0.6, 0.85)]],
    "0": [[(0.5, 0.17), (0.3, 0.3), (0.27, 0.55), (0.35, 0.78), (0.5, 0.84), (0.66, 0.76), (0.72, 0.5),
           (0.66, 0.27), (0.5, 0.17)]],
}  # fmt: skip


@dataclass(frozen=True)
class DemoResult:
    """What the page shows after an encoding (``None``: not shown)."""

    state: str  # idle, busy, done or error (#result's data-state)
    code_bytes: int | None
    code_hex: str  # without spaces, lower case
    code_b64: str
    png_bytes: int | None
    quality: int | None
    input_loaded: bool  # #encoded-input has a decoded image (naturalWidth > 0)
    input_width: int
    reconstruction_loaded: bool
    reconstruction_width: int
    error: str  # #error's text ('' when none)

    @property
    def code(self) -> bytes:
        return bytes.fromhex(self.code_hex)


# --------------------------------------------------------------------------- the browser


def chromium_path() -> str | None:
    """Debian's chromium: ``$LATENTWIRE_CHROMIUM``, ``chromium`` on PATH, or /usr/bin/chromium."""
    for candidate in (os.environ.get(CHROMIUM_ENV), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_chromium() -> str:
    """The chromium executable and Playwright, or skip (fail under ``CI=true``) saying what is missing."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "Playwright (pip install -e '.[dev]')"
    path = chromium_path()
    if missing is None and path is None:
        missing = f"a chromium browser (apt-get install chromium, or set {CHROMIUM_ENV})"
    if missing is not None or path is None:
        message = f"the browser tests need {missing}, which is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must have it", pytrace=False)
        pytest.skip(message)
    return path


@contextmanager
def chromium_browser(*, executable: str | None = None) -> Iterator[Browser]:
    """A headless Chromium (Debian's), closed afterwards; ``--no-sandbox`` only when run as root."""
    from playwright.sync_api import sync_playwright

    path = executable or require_chromium()
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- the page


def demo_url(page_url: str, *, sender: str | None = None, receiver: str | None = None) -> str:
    """``page_url`` with the ``sender`` and ``receiver`` query parameters (left out when None)."""
    from urllib.parse import urlencode

    query = urlencode({k: v for k, v in (("sender", sender), ("receiver", receiver)) if v is not None})
    return f"{page_url}?{query}" if query else page_url


def open_demo(
    browser: Browser,
    url: str,
    *,
    viewport: tuple[int, int] = DESKTOP,
    wait_for_levels: bool = True,
    init_scripts: Sequence[str] = (),
) -> Page:
    """A new page (its own context) at ``url``, once the script has run and, unless told not to,
    the quality levels have been asked of the sender (``html[data-ready]``). ``init_scripts`` run
    in the page before its own (to watch it from the start)."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    for script in init_scripts:
        context.add_init_script(script)
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.goto(url)
    if wait_for_levels:
        page.wait_for_selector("html[data-ready='true']", state="attached")
    return page


def draw_strokes(page: Page, strokes: Sequence[Sequence[tuple[float, float]]], *, steps: int = 8) -> None:
    """Draw ``strokes`` (points in 0…1 of the drawing area) with the mouse: press, move, release."""
    canvas = page.locator("#canvas")
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is in the viewport
    box = canvas.bounding_box()
    assert box is not None, "the drawing area is not visible"

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=steps)
        page.mouse.up()


def draw_digit(page: Page, digit: str = "7") -> None:
    """Draw one of ``DIGITS``."""
    draw_strokes(page, DIGITS[digit])


def choose_file(page: Page, file: Path | tuple[str, str, bytes]) -> None:
    """Choose a file in the page's file input: a path, or (name, MIME type, bytes)."""
    if isinstance(file, Path):
        page.set_input_files("#file", file)
    else:
        name, mime, data = file
        payload: FilePayload = {"name": name, "mimeType": mime, "buffer": data}
        page.set_input_files("#file", files=payload)


def select_quality(page: Page, level: int) -> None:
    """Pick a quality level (the page encodes its digit again)."""
    page.select_option("#quality", str(level))


def quality_levels(page: Page) -> list[int]:
    """The levels the page offers (from the sender's /v1/model)."""
    values: list[str] = page.eval_on_selector_all("#quality option", "options => options.map(o => o.value)")
    return [int(v) for v in values if v != ""]


def result_count(page: Page) -> int:
    return int(page.get_attribute("#result", "data-count") or 0)


@contextmanager
def expect_result(page: Page, *, timeout_ms: int = RESULT_TIMEOUT_MS) -> Iterator[None]:
    """Wait, after the block, for the page to show a new result or error (``#result``'s count)."""
    before = result_count(page)
    yield
    page.wait_for_function(
        """before => {
            const result = document.getElementById('result');
            return Number(result.dataset.count) > before && result.dataset.state !== 'busy';
        }""",
        arg=before,
        timeout=timeout_ms,
    )


def read_result(page: Page) -> DemoResult:
    """What the page shows now."""
    shown: dict[str, Any] = page.evaluate(
        """() => {
            const text = id => document.getElementById(id).textContent.trim();
            const image = id => {
                const img = document.getElementById(id);
                return {loaded: img.complete && img.naturalWidth > 0 && img.hasAttribute('src'),
                        width: img.naturalWidth};
            };
            return {
                state: document.getElementById('result').dataset.state,
                codeBytes: text('code-bytes'), codeHex: text('code-hex'), codeB64: text('code-b64'),
                pngBytes: text('png-bytes'), quality: text('code-quality'),
                input: image('encoded-input'), reconstruction: image('reconstruction'),
                error: document.getElementById('error').innerText.trim(),
            };
        }"""
    )

    def number(text: str) -> int | None:
        return int(text) if text.isdigit() else None

    hex_text = "".join(shown["codeHex"].split())
    return DemoResult(
        state=shown["state"],
        code_bytes=number(shown["codeBytes"]),
        code_hex=hex_text if all(c in "0123456789abcdef" for c in hex_text) else "",
        code_b64=shown["codeB64"] if shown["codeB64"] != "–" else "",
        png_bytes=number(shown["pngBytes"]),
        quality=number(shown["quality"]),
        input_loaded=bool(shown["input"]["loaded"]),
        input_width=int(shown["input"]["width"]),
        reconstruction_loaded=bool(shown["reconstruction"]["loaded"]),
        reconstruction_width=int(shown["reconstruction"]["width"]),
        error=shown["error"],
    )


def has_horizontal_overflow(page: Page) -> bool:
    """Whether the page scrolls sideways (its content is wider than the viewport)."""
    return bool(
        page.evaluate("() => document.documentElement.scrollWidth > document.documentElement.clientWidth")
    )


def screenshot(page: Page, path: Path | str, *, full_page: bool = True) -> Path:
    """Save a PNG screenshot of the page (folders made as needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=full_page)
    return target
