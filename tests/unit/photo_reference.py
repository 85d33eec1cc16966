"""FROZEN REFERENCE: a verbatim copy of ``latentwire.preprocess`` before its fast path (load_digit
shrinking large pictures, no decode lock, uint8 normalization).

Do not edit or "fix" this module: ``test_preprocess_photos.py`` uses it as the oracle: the fast
``to_mnist`` must match it exactly, and ``load_digit`` must match it exactly on pictures it does
not shrink and recognize phone photos at least as well.  The original module docstring follows.

Turning any image into an MNIST-style 28x28 digit, and small pixel utilities.

``load_digit(bytes)`` is what the services call: it decodes untrusted bytes safely
(``decode_image``: size checked from the header before anything is decompressed) and then
normalizes the picture the way the MNIST makers did (``to_mnist``): grayscale, white ink on
black, cropped to the ink, scaled so the longer side is 20 px, and pasted into 28x28 with the
ink's center of mass at (14, 14).  An image that is already 28x28 is taken as MNIST-style
and only converted to grayscale.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps

from latentwire.errors import BadImageError, TooLargeError

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "MNIST_SIZE",
    "decode_image",
    "load_digit",
    "png_bytes",
    "psnr",
    "to_mnist",
]

log = logging.getLogger(__name__)

#: Pillow format names ``decode_image`` opens; anything else (EPS, PSD, …) is refused so
#: untrusted bytes never reach a rarely used decoder (or Ghostscript).
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULT_MAX_PIXELS = 16_777_216  # 4096 x 4096
MNIST_SIZE = 28
_BOX = 20  # MNIST digits are scaled so the longer side of their ink is 20 px
_CENTER = 14.0  # where MNIST puts the center of mass, in (row, column) pixel indices
# Below this contrast (out of 255) against the background there is no ink, only noise.
_MIN_INK = 24.0
# Ink fainter than this fraction of the darkest stroke is paper texture or JPEG noise.
_NOISE_FRACTION = 0.15
_ACCEPTED_TEXT = "PNG, JPEG, BMP, GIF, TIFF or WebP"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# warnings.catch_warnings swaps process-wide state; serialize our decodes so concurrent
# requests in one service cannot restore each other's filters mid-decode.
_DECODE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- decoding


def _too_large(width: int, height: int, max_pixels: int) -> TooLargeError:
    return TooLargeError(
        f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels",
        hint=f"send an image of at most {max_pixels} pixels (a 28x28 digit is plenty)",
    )


def _open_header(data: bytes, max_pixels: int, caught: list[warnings.WarningMessage]) -> Image.Image:
    """Identify the format and read the header only; nothing is decompressed yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise TooLargeError(
            f"image refused as a decompression bomb: {exc}; the limit is {max_pixels} pixels",
            hint=f"send an image of at most {max_pixels} pixels (a 28x28 digit is plenty)",
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise BadImageError(f"not a recognized image; accepted formats: {_ACCEPTED_TEXT}") from exc
    except Exception as exc:  # a damaged header can raise almost anything inside a plugin
        raise BadImageError(f"unreadable image header ({type(exc).__name__}: {exc})") from exc
    width, height = image.size
    bomb = any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)
    if bomb or width * height > max_pixels:
        raise _too_large(width, height, max_pixels)
    if width < 1 or height < 1:
        raise BadImageError(f"image has no pixels ({width}x{height})")
    return image


def _load_pixels(image: Image.Image) -> None:
    """Decompress the (first frame's) pixels; damaged or truncated data becomes BadImageError."""
    try:
        image.load()
        # Phone photos are stored sideways with an EXIF note saying how to turn them.
        ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(
            f"image refused as a decompression bomb: {exc}",
            hint="send a smaller image (a 28x28 digit is plenty)",
        ) from exc
    except Exception as exc:  # Pillow decoders raise OSError, SyntaxError, ValueError, EOFError, …
        raise BadImageError(f"image data is damaged or truncated ({type(exc).__name__}: {exc})") from exc


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes (PNG, JPEG, BMP, GIF, TIFF or WebP) into a loaded Pillow image.

    The pixel count is checked from the header before anything is decompressed, so a
    decompression bomb costs nothing.  Animated images give their first frame.

    Raises:
        BadImageError: empty bytes, an unknown format, or damaged/truncated data.
        TooLargeError: more than ``max_pixels`` pixels (or Pillow's own bomb limit).
    """
    if not data:
        raise BadImageError(f"empty image: no bytes received; accepted formats: {_ACCEPTED_TEXT}")
    with _DECODE_LOCK, warnings.catch_warnings(record=True) as caught:
        # Record instead of print/raise: Pillow's bomb warning becomes TooLargeError below and
        # its chatter about odd EXIF or palettes must not fail a valid image.
        warnings.simplefilter("always")
        image = _open_header(bytes(data), max_pixels, caught)
        _load_pixels(image)
    for warning in caught:
        log.debug("pillow: %s", warning.message)
    return image


# --------------------------------------------------------------------------- grayscale


def _sixteen_bit_gray(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float32)
    if image.mode in _SIXTEEN_BIT_MODES or values.max(initial=0.0) > 255.0:
        values /= 257.0  # 65535 -> 255
    return np.clip(values, 0.0, 255.0)


def _float_gray(image: Image.Image) -> np.ndarray:
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    if values.max(initial=0.0) <= 1.0:
        values *= 255.0  # float images are usually 0..1
    return np.clip(values, 0.0, 255.0)


def _composited_gray(image: Image.Image) -> np.ndarray:
    """Gray levels of a transparent image laid on white paper."""
    la = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32)
    gray, alpha = la[..., 0], la[..., 1] / 255.0
    return gray * alpha + 255.0 * (1.0 - alpha)


def _gray(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 (H, W) gray levels 0..255, transparency composited onto white."""
    mode = image.mode
    try:
        if mode in _SIXTEEN_BIT_MODES or mode == "I":
            return _sixteen_bit_gray(image)
        if mode == "F":
            return _float_gray(image)
        if mode in _ALPHA_MODES or "transparency" in image.info:
            return _composited_gray(image)
        if mode not in {"1", "L", "P", "RGB"}:
            image = image.convert("RGB")  # CMYK, YCbCr, RGBX, …
        return np.asarray(image.convert("L"), dtype=np.float32)
    except (ValueError, OSError) as exc:  # e.g. LAB or HSV, which Pillow cannot turn into RGB
        raise BadImageError(f"cannot convert a {mode} image to grayscale: {exc}") from exc


# --------------------------------------------------------------------------- normalizing


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink strength 0..1 with the background removed, whatever the paper's polarity."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    # Dark ink on light paper (the usual scan or drawing) is inverted to MNIST's white on black.
    ink = background - gray if background > 127.5 else gray - background
    peak = float(ink.max())
    if peak < _MIN_INK:
        return np.zeros_like(gray)
    floor = _NOISE_FRACTION * peak
    # In place: a 4096x4096 float32 image is 64 MiB per temporary.
    ink -= floor
    ink /= peak - floor
    return np.clip(ink, 0.0, 1.0, out=ink)


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink's bounding box and scale so the longer side is 20 px."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = _BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    # Lanczos rings a little around hard edges; negative ink and overshoot mean nothing.
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _paste_centered(glyph: np.ndarray) -> np.ndarray:
    """Place the glyph in 28x28 so its center of mass sits at (14, 14), never cutting it off."""
    height, width = glyph.shape
    total = float(glyph.sum())
    if total > 0.0:
        cy = float((glyph.sum(axis=1) * np.arange(height)).sum()) / total
        cx = float((glyph.sum(axis=0) * np.arange(width)).sum()) / total
    else:
        cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    top = min(max(math.floor(_CENTER - cy + 0.5), 0), MNIST_SIZE - height)
    left = min(max(math.floor(_CENTER - cx + 0.5), 0), MNIST_SIZE - width)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = glyph
    return canvas


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def to_mnist(image: Image.Image, *, normalize: bool = True) -> np.ndarray:
    """An image as an MNIST-style uint8 (28, 28) array: white ink on black.

    With ``normalize=False`` the image must already be 28x28 and is only made grayscale.
    With ``normalize=True`` a 28x28 image is likewise passed through; any other size is
    inverted if it is dark-on-light, cleaned of background and faint noise, cropped to its
    ink, scaled to fit 20x20 and centered by center of mass.  A blank image gives zeros.

    Raises:
        BadImageError: ``normalize=False`` and the image is not 28x28, or a mode that
            cannot be made grayscale.
    """
    if image.size == (MNIST_SIZE, MNIST_SIZE):
        return _to_uint8(_gray(image))
    if not normalize:
        width, height = image.size
        raise BadImageError(
            f"image is {width}x{height}; 28x28 is required when preprocessing is off (normalize=False)",
            hint="send a 28x28 white-on-black digit, or turn preprocessing on",
        )
    ink = _ink(_gray(image))
    if not ink.any():
        return np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.uint8)
    return _to_uint8(_paste_centered(_fit_box(ink)) * 255.0)


def load_digit(data: bytes, *, normalize: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into an MNIST-style uint8 (28, 28) digit: ``decode_image`` + ``to_mnist``."""
    with decode_image(data, max_pixels=max_pixels) as image:
        return to_mnist(image, normalize=normalize)


# --------------------------------------------------------------------------- utilities


def png_bytes(pixels: np.ndarray, *, scale: int = 1) -> bytes:
    """A uint8 (H, W) grayscale array as PNG bytes, optionally enlarged ``scale`` times (nearest)."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W) array, got {pixels.dtype} {pixels.shape}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, not {scale!r}")
    if scale > 1:
        pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB (peak 255) of the mean squared error over all pixels given; ``math.inf`` if identical.

    For a batch (N, 28, 28) this is the PSNR of the set's mean MSE, not the mean of per-image PSNRs.
    """
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    if reference.dtype != np.uint8 or test.dtype != np.uint8:
        raise TypeError(f"psnr takes uint8 pixels, got {reference.dtype} and {test.dtype}")
    if reference.size == 0:
        raise ValueError("psnr of no pixels is undefined")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)
