"""latentwire.preprocess: safe decoding, MNIST-style normalization, PNG output and PSNR."""

from __future__ import annotations

import io
import math
import resource
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from latentwire import preprocess as pp
from latentwire.data import load_mnist
from latentwire.errors import BadImageError, DataUnavailableError, TooLargeError


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def center_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    weights = pixels.astype(np.float64)
    index = np.arange(pixels.shape[0])
    total = weights.sum()
    return float((weights.sum(1) * index).sum() / total), float((weights.sum(0) * index).sum() / total)


def ink_box(pixels: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def assert_mnist_like(pixels: np.ndarray) -> None:
    assert pixels.dtype == np.uint8 and pixels.shape == (28, 28)
    assert max(ink_box(pixels)) <= 20
    cy, cx = center_of_mass(pixels)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert pixels.max() == 255


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def drawn_digit(size: tuple[int, int] = (120, 90)) -> Image.Image:
    """A dark "0" with a tail, drawn off-center on white paper."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 60, 75), outline=0, width=7)
    draw.line((60, 40, 80, 70), fill=0, width=5)
    return image


@pytest.fixture(scope="module")
def mnist_digit() -> np.ndarray:
    try:
        return load_mnist("test", download=False).images[0]
    except DataUnavailableError as exc:
        pytest.skip(f"MNIST test split not available ({exc.message}); run `python -m latentwire.data`")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return pp.to_mnist(drawn_digit())


# --------------------------------------------------------------------------- normalization


def test_28x28_passes_through_unchanged() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    data = encode(Image.fromarray(pixels))
    np.testing.assert_array_equal(pp.load_digit(data), pixels)
    np.testing.assert_array_equal(pp.load_digit(data, normalize=False), pixels)


def test_28x28_colour_is_only_made_gray() -> None:
    rgb = Image.new("RGB", (28, 28), (10, 200, 30))
    expected = np.asarray(rgb.convert("L"))
    np.testing.assert_array_equal(pp.load_digit(encode(rgb)), expected)


def test_large_dark_on_light_digit_becomes_mnist(mnist_digit: np.ndarray) -> None:
    big = Image.fromarray(255 - mnist_digit).resize((28 * 6, 28 * 6), Image.Resampling.NEAREST)
    page = Image.new("L", (300, 200), 255)
    page.paste(big, (120, 20))  # off-center, dark ink on white
    out = pp.load_digit(encode(page))
    assert_mnist_like(out)
    assert correlation(out, mnist_digit) > 0.8
    assert out[0, 0] == 0  # inverted: white ink on black


def test_drawn_digit(reference: np.ndarray) -> None:
    assert_mnist_like(reference)
    assert reference[:3].max() == 0 and reference[-3:].max() == 0  # margins stay black


def test_light_on_dark_is_not_inverted(reference: np.ndarray) -> None:
    negative = Image.eval(drawn_digit(), lambda v: 255 - v)
    np.testing.assert_array_equal(pp.to_mnist(negative), reference)


def _transparent(base: Image.Image) -> Image.Image:
    """Black ink whose shape lives only in the alpha channel, on a transparent background."""
    rgba = Image.new("RGBA", base.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(base, lambda v: 255 - v))
    return rgba


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda im: im.convert("RGB"), id="RGB"),
        pytest.param(lambda im: im.convert("RGBA"), id="RGBA-opaque"),
        pytest.param(_transparent, id="RGBA-transparent"),
        pytest.param(lambda im: _transparent(im).convert("LA"), id="LA-transparent"),
        pytest.param(lambda im: im.convert("P"), id="P"),
        pytest.param(lambda im: _transparent(im).convert("PA"), id="PA"),
        pytest.param(lambda im: im.convert("1"), id="1-bit"),
        pytest.param(lambda im: im.convert("CMYK"), id="CMYK"),
        pytest.param(lambda im: im.convert("YCbCr"), id="YCbCr"),
        pytest.param(lambda im: Image.fromarray(np.asarray(im).astype(np.uint16) * 257), id="I;16"),
        pytest.param(lambda im: im.convert("I"), id="I"),
        pytest.param(lambda im: Image.fromarray(np.asarray(im, dtype=np.float32) / 255), id="F"),
    ],
)
def test_modes(convert: object, reference: np.ndarray) -> None:
    image = convert(drawn_digit())  # type: ignore[operator]
    out = pp.to_mnist(image)
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.95


@pytest.mark.parametrize(
    ("fmt", "mode", "params"),
    [
        ("PNG", "RGBA", {}),
        ("PNG", "I;16", {}),
        ("PNG", "P", {"transparency": 255}),  # the paper is transparent
        ("JPEG", "L", {"quality": 75}),
        ("JPEG", "CMYK", {}),
        ("BMP", "1", {}),
        ("GIF", "L", {}),
        ("TIFF", "RGB", {"compression": "tiff_lzw"}),
        ("WEBP", "RGB", {"lossless": True}),
    ],
)
def test_encoded_formats(fmt: str, mode: str, params: dict[str, object], reference: np.ndarray) -> None:
    base = drawn_digit()
    image = (
        Image.fromarray(np.asarray(base).astype(np.uint16) * 257) if mode == "I;16" else base.convert(mode)
    )
    out = pp.load_digit(encode(image, fmt, **params))
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.9


def test_animated_gif_uses_first_frame(reference: np.ndarray) -> None:
    first, blank = drawn_digit().convert("P"), Image.new("P", (120, 90), 255)
    data = encode(first, "GIF", save_all=True, append_images=[blank], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert correlation(pp.load_digit(data), reference) > 0.95


def test_exif_rotation_is_applied() -> None:
    tall = Image.new("L", (40, 100), 255)
    ImageDraw.Draw(tall).rectangle((15, 10, 25, 90), fill=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    decoded = pp.decode_image(encode(tall, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (100, 40)
    height, width = ink_box(pp.to_mnist(decoded))
    assert width == 20 and height < 6


@pytest.mark.parametrize("colour", [0, 255, 128])
def test_blank_gives_zeros(colour: int) -> None:
    out = pp.load_digit(encode(Image.new("L", (50, 40), colour)))
    assert out.dtype == np.uint8 and out.shape == (28, 28) and not out.any()


def test_faint_noise_is_blank() -> None:
    paper = np.random.default_rng(2).integers(240, 256, (60, 80), dtype=np.uint8)
    assert not pp.load_digit(encode(Image.fromarray(paper))).any()


def test_noisy_paper_does_not_spread_the_box(reference: np.ndarray) -> None:
    noise = np.random.default_rng(3).integers(-12, 13, (90, 120))
    noisy = np.clip(np.asarray(drawn_digit(), dtype=np.int64) + noise, 0, 255).astype(np.uint8)
    out = pp.to_mnist(Image.fromarray(noisy))
    assert_mnist_like(out)
    assert correlation(out, reference) > 0.9


def test_normalize_off_requires_28x28() -> None:
    with pytest.raises(BadImageError, match="28x28 is required when preprocessing is off"):
        pp.load_digit(encode(Image.new("L", (30, 30))), normalize=False)


def test_tiny_and_thin_images() -> None:
    for size in [(1, 1), (1, 200), (200, 1), (3, 2)]:
        out = pp.to_mnist(Image.new("L", size, 0))
        assert out.shape == (28, 28) and not out.any()
    line = Image.new("L", (5, 300), 255)
    ImageDraw.Draw(line).line((2, 10, 2, 290), fill=0)
    assert ink_box(pp.to_mnist(line))[0] == 20


# --------------------------------------------------------------------------- bad and hostile input


@pytest.mark.parametrize("data", [b"", b"definitely not an image", bytes(range(256)) * 4])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(BadImageError) as info:
        pp.load_digit(data)
    assert "PNG, JPEG" in info.value.message


def test_unaccepted_format_is_refused() -> None:
    with pytest.raises(BadImageError, match="accepted formats"):
        pp.load_digit(encode(drawn_digit(), "PPM"))


def test_truncated_png() -> None:
    data = encode(drawn_digit())
    with pytest.raises(BadImageError, match="damaged or truncated"):
        pp.load_digit(data[: len(data) // 2])


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels (CRC fixed up)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 4)  # four rows of data; the rest "truncated"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("width", "height", "max_pixels"),
    [
        (50_000, 50_000, pp.DEFAULT_MAX_PIXELS),  # Pillow's own DecompressionBombError
        (10_000, 10_000, 10**9),  # over Pillow's warning threshold: must not warn, must refuse
        (5_000, 5_000, pp.DEFAULT_MAX_PIXELS),  # under Pillow's limits, over ours
        (100, 100, 9_999),
    ],
)
def test_decompression_bomb_is_refused_cheaply(width: int, height: int, max_pixels: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for check in (pp.load_digit, pp.decode_image, pp.image_size):
        with pytest.raises(TooLargeError) as info:
            check(png_claiming(width, height), max_pixels=max_pixels)
        assert str(max_pixels) in info.value.message
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # ru_maxrss is KiB
    assert grown_mib < 20


def test_limit_is_inclusive() -> None:
    out = pp.load_digit(encode(Image.new("L", (100, 100), 255)), max_pixels=10_000)
    assert not out.any()
    assert pp.image_size(encode(Image.new("L", (100, 100), 255)), max_pixels=10_000) == (100, 100)


def test_image_size_reads_only_the_header() -> None:
    assert pp.image_size(png_claiming(4000, 3000)) == (4000, 3000)  # the pixel data is truncated
    assert pp.image_size(encode(drawn_digit(), "JPEG")) == (120, 90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the size is as stored, the pixel count the same
    assert pp.image_size(encode(drawn_digit(), "JPEG", exif=exif.tobytes())) == (120, 90)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"definitely not an image", id="garbage"),
        pytest.param(encode(drawn_digit(), "PPM"), id="unaccepted-format"),
        pytest.param(encode(drawn_digit())[:30], id="cut-in-header"),
        pytest.param(png_claiming(5_000, 5_000), id="too-many-pixels"),
        pytest.param(png_claiming(50_000, 50_000), id="pillow-bomb"),
    ],
)
def test_image_size_refuses_what_load_digit_refuses(data: bytes) -> None:
    with pytest.raises((BadImageError, TooLargeError)) as expected:
        pp.load_digit(data)
    with pytest.raises(type(expected.value)) as got:
        pp.image_size(data)
    assert got.value.message == expected.value.message


# --------------------------------------------------------------------------- utilities


def test_png_bytes_round_trip_and_scale() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    data = pp.png_bytes(pixels)
    assert data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    big = np.asarray(Image.open(io.BytesIO(pp.png_bytes(pixels, scale=3))))
    assert big.shape == (84, 84)
    np.testing.assert_array_equal(big[::3, ::3], pixels)
    np.testing.assert_array_equal(big[2::3, 1::3], pixels)


@pytest.mark.parametrize(
    ("pixels", "scale"),
    [
        (np.zeros((28, 28), dtype=np.float32), 1),
        (np.zeros((2, 28, 28), dtype=np.uint8), 1),
        (np.zeros((28, 28), dtype=np.uint8), 0),
        (np.zeros((28, 28), dtype=np.uint8), 1.5),
    ],
)
def test_png_bytes_rejects_bad_input(pixels: np.ndarray, scale: int) -> None:
    with pytest.raises(ValueError):
        pp.png_bytes(pixels, scale=scale)


def test_psnr() -> None:
    zeros = np.zeros((28, 28), dtype=np.uint8)
    assert pp.psnr(zeros, zeros) == math.inf
    tens = np.full((28, 28), 10, dtype=np.uint8)  # MSE 100
    assert pp.psnr(zeros, tens) == pytest.approx(10 * math.log10(255**2 / 100))
    assert pp.psnr(tens, zeros) == pp.psnr(zeros, tens)
    assert pp.psnr(np.zeros(4, np.uint8), np.full(4, 255, np.uint8)) == pytest.approx(0.0)


def test_psnr_of_a_batch_is_of_the_mean_mse() -> None:
    reference = np.zeros((2, 28, 28), dtype=np.uint8)
    test = reference.copy()
    test[1] = 20  # MSE 400 and 0: mean 200 (the mean of per-image PSNRs would be inf)
    assert pp.psnr(reference, test) == pytest.approx(10 * math.log10(255**2 / 200))


def test_psnr_rejects_mismatches() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        pp.psnr(np.zeros((28, 28), np.uint8), np.zeros((28, 27), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        pp.psnr(np.zeros((28, 28), np.float32), np.zeros((28, 28), np.float32))


# --------------------------------------------------------------------------- properties

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"]


@st.composite
def images(draw: st.DrawFn) -> Image.Image:
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    if draw(st.booleans()):  # mostly-flat images with a blob hit the interesting branches
        pixels[:] = pixels[0, 0]
        pixels[height // 3 : 2 * height // 3 + 1, width // 3 : 2 * width // 3 + 1] = 255 - pixels[0, 0]
    if mode == "I;16":
        return Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(pixels[..., 0].astype(np.float32) / 255)
    return Image.fromarray(pixels).convert(mode)  # 4 uint8 channels: RGBA


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), normalize=st.booleans())
def test_any_image_gives_mnist_or_bad_image(image: Image.Image, normalize: bool) -> None:
    try:
        out = pp.to_mnist(image, normalize=normalize)
    except BadImageError:
        assert not normalize and image.size != (28, 28)
        return
    assert out.dtype == np.uint8 and out.shape == (28, 28)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), fmt=st.sampled_from(FORMATS), cut=st.integers(0, 400), flip=st.integers(0, 400))
def test_any_bytes_give_mnist_or_a_clean_error(image: Image.Image, fmt: str, cut: int, flip: int) -> None:
    try:
        data = bytearray(encode(image, fmt))
    except (OSError, ValueError, KeyError):
        assume(False)  # this format cannot store this mode
        return
    if cut:
        data = data[: max(1, len(data) - cut)]
    if flip and flip < len(data):
        data[flip] ^= 0x5A
    try:
        out = pp.load_digit(bytes(data), max_pixels=100_000)
    except (BadImageError, TooLargeError):
        return
    assert out.dtype == np.uint8 and out.shape == (28, 28)
