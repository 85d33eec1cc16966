"""latentwire.preprocess's fast path, against the frozen reference (tests/unit/photo_reference.py).

``load_digit`` shrinks large pictures before normalizing them (JPEG: decoded at 1/2..1/8 scale
and straight to gray; others: averaged down in blocks), decodes without a lock, and normalizes
from uint8 gray levels.  The reference is the module as it was before: it works at full size.

* Exact: ``to_mnist`` (always full size) and ``load_digit`` on pictures it does not shrink
  (shorter side under 2 * WORK_SIDE) give the reference's pixels exactly.
* Phone photos (``photos.phone_photo``: real MNIST test digits photographed as dark ink on
  unevenly lit, grainy paper, 4000x3000 JPEG q90; a portrait stored sideways with EXIF
  orientation 6; a digit spanning a tenth of the photo; a 2400x1800 PNG): the digit must be
  recognized as well as by the reference.  Measured on 40 such photos (10 each of those four
  kinds, MNIST test digits 0..39) when the fast path was written: correlation with the
  reference's digit 0.987..1.000 (PSNR 30.0..49.6 dB; the lowest are the small digits, where
  a one-pixel shift of a thin stroke costs most); correlation with the original MNIST digit
  at most 0.018 below the reference's, and often above; a 3-nearest-neighbour classifier
  gave the same label as for the reference's digit in 40 of 40.  Thresholds below sit
  under those with margin.
* Big pictures in every mode (transparent, palette, 16-bit, float, CMYK, …) shrink to within
  a few gray levels of the reference: 45.8..46.4 dB measured.

No timings are asserted: shared machines are too noisy for that.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from latentwire import preprocess as pp
from latentwire.data import MnistSplit
from latentwire.errors import BadImageError, LatentwireError, TooLargeError
from tests.unit import photo_reference as reference
from tests.unit.photos import EXIF_ORIENTATION, phone_photo

# Thresholds, under the measured worst cases (see the module docstring) with margin.
MIN_CORRELATION_WITH_REFERENCE = 0.97  # measured >= 0.987
MIN_PSNR_WITH_REFERENCE = 27.0  # dB, measured >= 30.0
MAX_LOSS_AGAINST_ORIGINAL = 0.04  # correlation with the MNIST digit; measured <= 0.018
MIN_CORRELATION_WITH_ORIGINAL = 0.85  # for the photos below, measured 0.90..0.98
MIN_PSNR_ALL_MODES = 40.0  # dB, measured >= 45.8


def encode(image: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


# --------------------------------------------------------------------------- phone photos

# name: (MNIST test index, phone_photo arguments).  Generating all of them takes about a second.
PHOTOS: dict[str, tuple[int, dict[str, Any]]] = {
    "landscape-7": (0, {"fraction": 0.6, "center": (0.45, 0.5)}),
    "landscape-4": (4, {"fraction": 0.6, "center": (0.6, 0.45), "seed": 4}),
    "portrait-exif-2": (1, {"size": (3000, 4000), "orientation": 6, "fraction": 0.5, "seed": 1}),
    "small-digit-3": (18, {"fraction": 0.1, "center": (0.3, 0.6), "seed": 18}),
    "png-exif-0": (3, {"size": (2400, 1800), "fmt": "PNG", "orientation": 6, "fraction": 0.5, "seed": 3}),
}


@dataclass(frozen=True)
class Photo:
    name: str
    index: int  # into the MNIST test split
    label: int
    original: np.ndarray  # the MNIST digit photographed
    data: bytes
    fast: np.ndarray  # pp.load_digit(data)
    slow: np.ndarray  # reference.load_digit(data): the full-size pipeline as it was


@pytest.fixture(scope="session")
def photos(mnist_test: MnistSplit) -> dict[str, Photo]:
    made = {}
    for name, (index, params) in PHOTOS.items():
        original = mnist_test.images[index]
        data = phone_photo(original, **params)
        made[name] = Photo(
            name,
            index,
            int(mnist_test.labels[index]),
            original,
            data,
            pp.load_digit(data),
            reference.load_digit(data),
        )
    return made


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photo_is_a_big_picture(name: str, photos: dict[str, Photo]) -> None:
    params = PHOTOS[name][1]
    width, height = params.get("size", (4000, 3000))
    stored = (height, width) if params.get("orientation") else (width, height)
    assert pp.image_size(photos[name].data) == stored
    assert min(stored) >= 2 * pp.WORK_SIDE  # so load_digit takes the fast path


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photo_gives_the_reference_digit(name: str, photos: dict[str, Photo]) -> None:
    photo = photos[name]
    assert photo.fast.dtype == np.uint8 and photo.fast.shape == (28, 28)
    assert correlation(photo.fast, photo.slow) >= MIN_CORRELATION_WITH_REFERENCE
    assert pp.psnr(photo.slow, photo.fast) >= MIN_PSNR_WITH_REFERENCE


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photo_is_as_close_to_the_original(name: str, photos: dict[str, Photo]) -> None:
    photo = photos[name]
    fast, slow = correlation(photo.fast, photo.original), correlation(photo.slow, photo.original)
    assert slow >= MIN_CORRELATION_WITH_ORIGINAL  # the photo is a fair test: the reference reads it
    assert fast >= slow - MAX_LOSS_AGAINST_ORIGINAL


def test_photos_are_recognized_as_before(photos: dict[str, Photo], mnist_test: MnistSplit) -> None:
    """A 3-nearest-neighbour classifier over the rest of the test split labels both digits alike."""
    used = [photo.index for photo in photos.values()]
    keep = np.ones(len(mnist_test.labels), dtype=bool)
    keep[used] = False
    known = mnist_test.images[keep].reshape(int(keep.sum()), -1).astype(np.float32)
    labels = mnist_test.labels[keep]

    def classify(digits: list[np.ndarray]) -> list[int]:
        queries = np.stack(digits).reshape(len(digits), -1).astype(np.float32)
        distances = (known * known).sum(axis=1)[None, :] - 2.0 * queries @ known.T
        nearest = np.argsort(distances, axis=1)[:, :3]
        return [int(np.bincount(labels[row], minlength=10).argmax()) for row in nearest]

    truth = [photo.label for photo in photos.values()]
    assert classify([photo.original for photo in photos.values()]) == truth  # a fair test
    assert classify([photo.slow for photo in photos.values()]) == truth
    assert classify([photo.fast for photo in photos.values()]) == truth


@pytest.mark.parametrize("name", list(PHOTOS))
def test_full_size_path_is_the_reference(name: str, photos: dict[str, Photo]) -> None:
    """decode_image + to_mnist still is the old pipeline, pixel for pixel (EXIF turn included)."""
    with pp.decode_image(photos[name].data) as image:
        np.testing.assert_array_equal(pp.to_mnist(image), photos[name].slow)


def test_decoding_in_threads_gives_the_same_digits(photos: dict[str, Photo]) -> None:
    jobs = [photo.data for photo in photos.values()] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(pp.load_digit, jobs))
    for data, result in zip(jobs, results, strict=True):
        expected = next(photo.fast for photo in photos.values() if photo.data is data)
        np.testing.assert_array_equal(result, expected)


def test_unshrunk_photo_is_exact(mnist_test: MnistSplit) -> None:
    """Shorter side under 2 * WORK_SIDE: nothing is shrunk, and the digit is the reference's."""
    side = 2 * pp.WORK_SIDE - 1
    for size, orientation in [((side + 300, side), None), ((side, side + 200), 6)]:
        data = phone_photo(mnist_test.images[7], size=size, fraction=0.5, seed=7, orientation=orientation)
        np.testing.assert_array_equal(pp.load_digit(data), reference.load_digit(data))


# --------------------------------------------------------------------------- shrinking in every mode


def _big_digit() -> Image.Image:
    """A dark "0" with a tail on white paper, big enough (1400x1100) to be shrunk."""
    image = Image.new("L", (1400, 1100), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((300, 150, 800, 950), outline=0, width=60)
    draw.line((800, 550, 1050, 900), fill=0, width=45)
    return image


def _transparent(base: Image.Image) -> Image.Image:
    rgba = Image.new("RGBA", base.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(base, lambda v: 255 - v))
    return rgba


BIG_MODES: dict[str, Callable[[Image.Image], bytes]] = {
    "L": encode,
    "RGB": lambda im: encode(im.convert("RGB")),
    "RGBA-transparent": lambda im: encode(_transparent(im)),
    "LA-transparent": lambda im: encode(_transparent(im).convert("LA")),
    "P": lambda im: encode(im.convert("P")),
    "P-alpha-palette": lambda im: encode(_transparent(im).convert("P")),  # transparency as bytes
    "1": lambda im: encode(im.convert("1")),
    "I;16": lambda im: encode(Image.fromarray(np.asarray(im).astype(np.uint16) * 257)),
    "I-TIFF": lambda im: encode(im.convert("I"), "TIFF"),
    "F-TIFF": lambda im: encode(Image.fromarray(np.asarray(im, dtype=np.float32) / 255), "TIFF"),
    "CMYK-JPEG": lambda im: encode(im.convert("CMYK"), "JPEG"),
    "L-JPEG": lambda im: encode(im, "JPEG", quality=90),
    "GIF": lambda im: encode(im.convert("P"), "GIF"),
    "WEBP": lambda im: encode(im.convert("RGB"), "WEBP", lossless=True),
}


@pytest.mark.parametrize("mode", list(BIG_MODES))
def test_big_pictures_shrink_faithfully_in_every_mode(mode: str) -> None:
    data = BIG_MODES[mode](_big_digit())
    assert min(pp.image_size(data)) >= 2 * pp.WORK_SIDE
    fast, slow = pp.load_digit(data), reference.load_digit(data)
    assert pp.psnr(slow, fast) >= MIN_PSNR_ALL_MODES
    assert correlation(fast, slow) > 0.99


def test_palette_transparency_as_bytes_does_not_warn() -> None:
    """Pillow warns when such an image is converted to L/RGB; pytest makes that an error here."""
    small = _transparent(_big_digit().resize((140, 110))).convert("P")
    data = encode(small)
    assert isinstance(Image.open(io.BytesIO(data)).info["transparency"], bytes)
    np.testing.assert_array_equal(pp.load_digit(data), reference.load_digit(data))


# --------------------------------------------------------------------------- warnings and EXIF


def _corrupt_exif(orientation: int | None = None) -> bytes:
    """EXIF whose description tag points past the end of the data: Pillow warns and skips it."""
    entries = [(0x010E, 2, 100, 4000)]  # ASCII, 100 bytes at offset 4000 of a ~40-byte block
    if orientation is not None:
        entries.insert(0, (EXIF_ORIENTATION, 3, 1, orientation))  # SHORT, stored inline
    ifd = len(entries).to_bytes(2, "little")
    for tag, kind, count, value in entries:
        ifd += tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + count.to_bytes(4, "little")
        ifd += value.to_bytes(4, "little")
    return b"Exif\0\0" + b"II*\0" + (8).to_bytes(4, "little") + ifd + bytes(4)


@contextmanager
def service_warning_filters() -> Iterator[list[warnings.WarningMessage]]:
    """The warning filters of a service process: Python's defaults plus what preprocess adds.

    pytest runs each test under its own filters ("error", from pyproject.toml), which replace
    the ones ``_silence_pillow_warnings`` installed when preprocess was imported.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)  # Python's defaults
        pp._silence_pillow_warnings()
        yield caught


def tall_bar() -> Image.Image:
    tall = Image.new("L", (40, 100), 255)
    ImageDraw.Draw(tall).rectangle((15, 10, 25, 90), fill=0)
    return tall


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_corrupt_exif_does_not_fail_a_valid_image(fmt: str) -> None:
    data = encode(tall_bar(), fmt, exif=_corrupt_exif(orientation=6))
    with pytest.warns(UserWarning, match="Skipping tag"):  # the fixture is what it claims to be
        Image.open(io.BytesIO(data)).getexif()
    with service_warning_filters() as caught:
        out = pp.load_digit(data)
        with pp.decode_image(data) as image:
            assert image.size == (100, 40)  # the readable orientation tag still counts
    assert not caught  # nothing printed (or remembered in a warning registry) per upload
    height, width = np.flatnonzero(out.any(1)).size, np.flatnonzero(out.any(0)).size
    assert width == 20 and height < 6  # turned: the bar lies down


def test_corrupt_exif_where_warnings_are_errors() -> None:
    """Under -W error (and pytest) Pillow's warning is an error: refused cleanly, or EXIF skipped."""
    jpeg = encode(tall_bar(), "JPEG", exif=_corrupt_exif(orientation=6))
    with pytest.raises(BadImageError, match="Skipping tag"):  # Pillow reads a JPEG's EXIF on open
        pp.load_digit(jpeg)
    png = encode(tall_bar(), "PNG", exif=_corrupt_exif(orientation=6))
    with pp.decode_image(png) as image:  # a PNG's EXIF is read after decoding: skipped
        assert image.size == (40, 100)


def test_pillow_warnings_are_silenced_once_for_the_process() -> None:
    """Pillow's per-file warnings are ignored by the filter added at import; others still show."""
    with service_warning_filters() as caught:
        with pytest.raises(TooLargeError):  # over Pillow's warning threshold: refused, not printed
            pp.image_size(png_claiming(10_000, 10_000), max_pixels=10**9)
        warnings.warn("our own warnings still show", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["our own warnings still show"]


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_every_exif_orientation_matches_the_reference(orientation: int, mnist_test: MnistSplit) -> None:
    digit = Image.fromarray(255 - mnist_test.images[9]).resize((84, 112))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    data = encode(digit, "JPEG", exif=exif.tobytes())
    np.testing.assert_array_equal(pp.load_digit(data), reference.load_digit(data))
    with pp.decode_image(data) as image, reference.decode_image(data) as expected:
        assert image.size == expected.size
        np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))


# --------------------------------------------------------------------------- exact equivalence

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]


@st.composite
def images(draw: st.DrawFn) -> Image.Image:
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    if draw(st.booleans()):  # paper with a blob of ink: the branches that normalize
        pixels[:] = pixels[0, 0]
        top, left = rng.integers(0, height), rng.integers(0, width)
        pixels[top : top + height // 3 + 1, left : left + width // 3 + 1] = 255 - pixels[0, 0]
    if mode == "I;16":
        return Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    if mode == "F":
        scale = draw(st.sampled_from([1.0, 1 / 255]))  # 0..255 and 0..1 float images
        return Image.fromarray(pixels[..., 0].astype(np.float32) * np.float32(scale))
    return Image.fromarray(pixels).convert(mode)


def outcome(function: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> object:
    try:
        return function(*args, **kwargs).tobytes()
    except LatentwireError as exc:
        return type(exc).__name__


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), normalize=st.booleans())
def test_to_mnist_matches_reference(image: Image.Image, normalize: bool) -> None:
    assert outcome(pp.to_mnist, image, normalize=normalize) == outcome(
        reference.to_mnist, image, normalize=normalize
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), fmt=st.sampled_from(FORMATS), normalize=st.booleans())
def test_load_digit_matches_reference_unshrunk(image: Image.Image, fmt: str, normalize: bool) -> None:
    try:
        data = encode(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode
    assert outcome(pp.load_digit, data, normalize=normalize) == outcome(
        reference.load_digit, data, normalize=normalize
    )


def test_noise_floor_edge_cases_match_reference() -> None:
    """Ink exactly at the noise floor, or exactly at the minimum contrast, is decided as before."""
    for paper, ink, speck in [(200, 40, 176), (200, 176, 200), (40, 200, 64), (230, 206, 230), (128, 0, 109)]:
        page = np.full((50, 60), paper, dtype=np.uint8)
        page[10:30, 20:35] = ink
        page[40, 5] = speck  # 15% of the peak contrast away from the paper, or near it
        image = Image.fromarray(page)
        np.testing.assert_array_equal(pp.to_mnist(image), reference.to_mnist(image))
        np.testing.assert_array_equal(pp.to_mnist(image.convert("F")), reference.to_mnist(image.convert("F")))


# --------------------------------------------------------------------------- header-only checks


def test_normalize_off_refuses_other_sizes_before_decoding() -> None:
    data = encode(Image.new("L", (300, 200), 255))
    truncated = data[: len(data) // 2]  # decoding would call it damaged; the header is enough
    with pytest.raises(BadImageError, match="28x28 is required"):
        pp.load_digit(truncated, normalize=False)


def test_over_pillows_limit_is_refused_without_a_warning_filter() -> None:
    """In a service (no "error" filter) Pillow only warns past its limit; we refuse anyway."""
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = math.isqrt(limit) + 1  # over Pillow's warning threshold, under its error one
    data = png_claiming(side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for check in (pp.image_size, pp.decode_image, pp.load_digit):
            with pytest.raises(TooLargeError, match="decompression-bomb limit") as info:
                check(data, max_pixels=10 * limit)
            assert str(10 * limit) in info.value.message


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels (CRC fixed up)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)  # four rows of data; the rest "truncated"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
