"""Schemathesis hooks for test_contract.py: positive data that really is positive.

``st run`` loads this file (``SCHEMATHESIS_HOOKS=<this path>``) in its own process; pytest
collects it too and finds no test. What OpenAPI cannot say, and these hooks supply:

- a raw image body (``image/png``, ``image/jpeg``, …) and a multipart image part are real 28×28
  digits in that format (28×28, so that ``preprocess=false`` accepts them too);
- a raw code (``application/octet-stream``), a batch container and a code string in a positive
  JSON body are real codes made by the running sender with the shipped ladder (``CONTRACT_DATA``, a JSON
  file test_contract.py writes);
- ``?quality=`` with ``?denoise=``: only the pairs the ladder serves (the documented rule;
  another pair is a documented 400, tested in test_contract.py);
- every 4xx answer has the one error shape ``{"error", "detail", "hint"}``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

#: Pillow's format name for each image media type the sender documents.
IMAGE_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/bmp": "BMP",
    "image/gif": "GIF",
    "image/tiff": "TIFF",
    "image/webp": "WEBP",
}
DATA_ENV = "CONTRACT_DATA"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def digit_image(fmt: str, top: int, left: int, height: int, width: int, ink: int, light: bool) -> bytes:
    """A 28×28 grayscale image of one bar-shaped stroke, in Pillow format ``fmt``."""
    import numpy as np
    from PIL import Image

    pixels = np.full((28, 28), 255 if light else 0, np.uint8)
    pixels[top : top + height, left : left + width] = 255 - ink if light else ink
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _as_int(value: object) -> int | None:
    """A query value as the service reads an integer (generated values may be ints or strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _as_bool(value: object) -> bool | None:
    """A query value as pydantic reads a boolean (None: not a boolean)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def register(data: dict[str, Any]) -> None:
    """Register the strategies, the query filter and the error-shape check with schemathesis."""
    import schemathesis
    from hypothesis import strategies as st

    def images(fmt: str) -> st.SearchStrategy[bytes]:
        return st.builds(
            lambda top, left, height, width, ink, light: digit_image(
                fmt, top, left, height, width, ink, light
            ),
            st.integers(2, 10),
            st.integers(2, 10),
            st.integers(4, 16),
            st.integers(2, 16),
            st.integers(160, 255),
            st.booleans(),
        )

    for media_type, fmt in IMAGE_FORMATS.items():
        schemathesis.openapi.media_type(media_type, images(fmt))

    codes = [base64.b64decode(c) for c in data["codes"]]
    containers = [base64.b64decode(c) for c in data["containers"]]
    code_strings = [base64.urlsafe_b64encode(c).decode("ascii").rstrip("=") for c in codes]
    schemathesis.openapi.media_type("application/octet-stream", st.sampled_from(codes))
    schemathesis.openapi.media_type("application/x-latentwire-batch", st.sampled_from(containers))
    schemathesis.openapi.format("latentwire-code", st.sampled_from(code_strings))

    served = {(int(q), bool(d)) for q, d in data["served"]}
    levels = {q for q, _ in served}

    @schemathesis.hook
    def filter_case(context: Any, case: Any) -> bool:
        """Drop a ?quality= that the ladder serves, paired with a ?denoise= it does not serve it with.

        ``filter_case``, not ``filter_query``: the coverage phase applies only case hooks.
        """
        query = case.query
        if not isinstance(query, dict):
            return True
        quality, denoise = _as_int(query.get("quality")), _as_bool(query.get("denoise", False))
        if quality not in levels or denoise is None:
            return True
        return (quality, denoise) in served

    def real_code(text: object) -> object:
        """A real code in place of a generated string: the same one for the same string."""
        if not isinstance(text, str):
            return text
        return code_strings[zlib.crc32(text.encode("utf-8", "surrogatepass")) % len(code_strings)]

    @schemathesis.hook
    def map_case(context: Any, case: Any) -> Any:
        """Positive JSON bodies of the receiver get real codes: a string the schema allows is only
        base64url, not a code the receiver serves (a custom format reaches the fuzzing phase only).
        """
        if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
            return case
        if "code" in case.body:
            case.body = {**case.body, "code": real_code(case.body["code"])}
        if isinstance(case.body.get("codes"), list):
            case.body = {**case.body, "codes": [real_code(c) for c in case.body["codes"]]}
        return case

    @schemathesis.check
    def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
        """Every 4xx is JSON ``{"error", "detail", "hint"}``, each a non-empty string."""
        if not 400 <= response.status_code < 500:
            return None
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        if not content_type.startswith("application/json"):
            raise AssertionError(f"a {response.status_code} answered {content_type!r}, not the JSON error")
        body = response.json()
        if not isinstance(body, dict) or set(body) != {"error", "detail", "hint"}:
            raise AssertionError(f"a {response.status_code} answered {body!r}, not the one error shape")
        if not all(isinstance(v, str) and v for v in body.values()):
            raise AssertionError(f"a {response.status_code} has an empty or non-string field: {body!r}")
        return True


if __name__ == "_schemathesis_hooks":  # loaded by `st run`, not by pytest
    register(json.loads(Path(os.environ[DATA_ENV]).read_text()))
