"""Synthetic phone photos of MNIST digits, for testing ``load_digit`` on what users really upload.

A photo here is a real MNIST digit drawn as dark ink on light paper: the paper is unevenly lit
(a smooth random shading field, slightly warm in colour) and grainy (gaussian sensor noise), the
digit is enlarged smoothly (bicubic) to a chosen fraction of the canvas, and the result is saved
as an RGB JPEG the way a phone does (quality ~90, 4:2:0 chroma), optionally stored sideways with
an EXIF orientation tag.  Everything is done with Pillow's C operations, so a 12-megapixel photo
costs about a tenth of a second to make and nothing large is committed to the repository.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

__all__ = ["EXIF_ORIENTATION", "phone_photo"]

EXIF_ORIENTATION = 0x0112


def _paper(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Light, slightly unevenly lit paper: a 3x4 field of random levels blown up smoothly."""
    field = rng.integers(208, 229, (3, 4), dtype=np.uint8)
    return Image.fromarray(field).resize(size, Image.Resampling.BICUBIC)


def phone_photo(
    digit: np.ndarray,
    *,
    size: tuple[int, int] = (4000, 3000),
    fraction: float = 0.6,
    center: tuple[float, float] = (0.5, 0.5),
    seed: int = 0,
    noise: float = 3.0,
    orientation: int | None = None,
    quality: int = 90,
    fmt: str = "JPEG",
) -> bytes:
    """A photo of ``digit`` (MNIST uint8 (28, 28), white on black) as encoded bytes.

    Args:
        size: the upright (width, height) of the photo as it should be viewed.
        fraction: the side of the digit's 28x28 cell as a fraction of the photo's shorter side
            (its ink, like MNIST's, spans about 20/28 of that).
        center: where the cell's center lies, as fractions of (width, height).
        noise: the sensor noise's standard deviation, in gray levels.
        orientation: ``None`` stores the photo upright; 6 stores it turned 90° counter-clockwise
            with EXIF orientation 6 ("rotate 90° clockwise to view"), as phones held upright do.
        fmt: ``"JPEG"`` (``quality``), or any other format Pillow writes (``"PNG"``: fast, level 1).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    side = max(1, round(fraction * min(width, height)))
    # Ink darkens the paper by up to 80%: a pen stroke on paper is dark gray, not black.
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    shade = Image.new("L", size, 255)
    shade.paste(
        ink.point(lambda v: 255 - v * 4 // 5),
        (round(center[0] * width - side / 2), round(center[1] * height - side / 2)),
    )
    # Gaussian grain around 128, made at a quarter of the size (a phone's denoised sensor noise is
    # a few pixels wide) and from ``seed``, not Image.effect_noise (unseeded, and slow at full size).
    grain_levels = rng.normal(128.0, noise, (max(1, height // 4), max(1, width // 4)))
    grain = Image.fromarray(np.clip(grain_levels, 0, 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR
    )
    paper = _paper(size, rng)
    channels = []
    for tint in (6, 0, -10):  # warm paper: a little red, a little less blue
        lit = paper.point(lambda v, t=tint: min(255, max(0, v + t)))
        channels.append(ImageChops.add(ImageChops.multiply(lit, shade), grain, scale=1.0, offset=-128))
    photo = Image.merge("RGB", channels)
    # compress_level 1: a 4-megapixel PNG saves in a fraction of a second instead of seconds.
    params: dict[str, object] = {}
    if fmt == "JPEG":
        params["quality"] = quality
    elif fmt == "PNG":
        params["compress_level"] = 1
    if orientation is not None:
        if orientation != 6:
            raise ValueError("only orientation 6 (stored turned 90° counter-clockwise) is made here")
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        params["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    photo.save(buffer, format=fmt, **params)
    return buffer.getvalue()
