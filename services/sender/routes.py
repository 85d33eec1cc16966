"""The sender's routes: images in, codes out.

Each request is admitted first (room in the encoder's queue, its body in the byte budget; else
503), then its images are decoded — a small one on the event loop, large ones on the decode
threads — and its digits join the next micro-batch of the encoder.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentwire import bitstream
from latentwire.codec import Compressor
from latentwire.errors import BadRequestError, LatentwireError, TooLargeError, UnsupportedMediaError
from latentwire.ladder import EncoderLadder
from latentwire.preprocess import load_digit, png_bytes
from latentwire_http.budget import ByteBudget
from latentwire_http.metrics import observe_code_sizes
from latentwire_http.requests import (
    b64url_encode,
    form_field_bytes,
    media_type,
    read_body,
    wants_octet_stream,
)
from latentwire_http.schemas import BINARY, ModelInfo, error_responses, model_info
from latentwire_sender.deps import BatcherDep, EncodeBatcher, LadderDep, compressor_dependency
from latentwire_sender.schemas import EncodeBatchResponse, EncodedCode, EncodeResponse
from latentwire_sender.settings import SenderSettings

# Decoded on the event loop when this small (a 28×28 digit takes ~30 µs); larger images go to
# the decode threads, so a big photo never stalls other requests or the health checks.
INLINE_MAX_PIXELS = 128 * 128
INLINE_MAX_BYTES = 64 * 1024

#: Multipart fields read as images even without a filename (any part with a filename is one).
IMAGE_FIELDS = frozenset({"file", "files"})
#: The image types documented for a raw body (any image/* is tried; these are what Pillow reads here).
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/tiff", "image/webp")
_IMAGE_TEXT = (
    "Any size and mode; a 28×28 image is encoded as it is, a larger one normalized like MNIST "
    "unless preprocess=false (then it must be 28×28)"
)


def _limits(settings: SenderSettings | None) -> str:
    if settings is None:
        return ""
    return f" At most {settings.max_body_bytes} bytes and {settings.max_image_pixels} pixels per image."


def _image_body(settings: SenderSettings | None) -> dict[str, Any]:
    part = {
        "type": "object",
        "properties": {"file": BINARY},
        "required": ["file"],
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "description": "one image (PNG, JPEG, BMP, GIF, TIFF or WebP) as the raw body with its image/* "
            "content type, or as the one file of a multipart/form-data body (field `file`, a filename "
            f"optional; the part's content type is not checked). {_IMAGE_TEXT}.{_limits(settings)}",
            "content": {
                **{kind: {"schema": {**BINARY, "minLength": 1}} for kind in IMAGE_MEDIA_TYPES},
                "multipart/form-data": {"schema": part, "encoding": {"file": {"contentType": "image/*"}}},
            },
        }
    }


def _batch_body(settings: SenderSettings | None) -> dict[str, Any]:
    files: dict[str, Any] = {"type": "array", "items": BINARY, "minItems": 1}
    if settings is not None:
        files["maxItems"] = settings.max_batch
    count = f"1 to {settings.max_batch}" if settings is not None else "one or more"
    return {
        "requestBody": {
            "required": True,
            "description": f"{count} images (PNG, JPEG, BMP, GIF, TIFF or WebP) as multipart/form-data "
            f"files, field name `files` (repeated, a filename optional); the codes come back in this order. "
            f"{_IMAGE_TEXT}."
            f"{_limits(settings)}",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": files},
                        "required": ["files"],
                        "additionalProperties": False,
                    },
                    "encoding": {"files": {"contentType": "image/*"}},
                }
            },
        }
    }


_ENCODE_ERRORS = {
    400: "empty body, malformed multipart body or one without exactly one file, or a quality level "
    "(or denoise=true at a level) this service does not serve (error bad_request)",
    413: "the body, or the image's pixel count (decompression bombs included), is over the limit "
    "(error too_large)",
    415: "a content type other than image/* or multipart/form-data (error unsupported_media_type)",
    422: "not a decodable image, or not 28×28 with preprocess=false (error bad_image); a query parameter "
    "of the wrong type or out of 0…15 (error bad_request)",
    503: "the encoder's queue or the budget of bodies in flight is full: retry after the Retry-After "
    "header's seconds (error overloaded)",
}
_ENCODE_BATCH_ERRORS = {
    **_ENCODE_ERRORS,
    400: "empty body, malformed multipart body or one without a file, or a quality level (or "
    "denoise=true at a level) this service does not serve (error bad_request)",
    413: "the body, the number of images, or an image's pixel count is over the limit (error too_large)",
    415: "a content type other than multipart/form-data (error unsupported_media_type)",
    422: "an image is not decodable, or not 28×28 with preprocess=false (error bad_image; the detail "
    "names its index); a query parameter of the wrong type or out of 0…15 (error bad_request)",
}
_ACCEPTED = (
    "send the image as the raw body with Content-Type image/png (image/jpeg, …), or as multipart/form-data"
)
PreprocessQuery = Query(
    True,
    description="normalize like MNIST (grayscale, invert light backgrounds, fit the digit in 20×20, "
    "center by mass in 28×28); false sends the pixels as they are and requires a 28×28 image",
)
InputQuery = Query(
    False,
    alias="input",
    description="add the field `input` to the JSON answer: the 28×28 grayscale PNG of the digit the code "
    "was made from, after preprocessing (base64url). Ignored for a raw answer (Accept: "
    "application/octet-stream)",
)


def startup(app: Any) -> None:
    """The sender's own state: the body budget and the decode threads' limiter."""
    settings: SenderSettings = app.state.settings
    app.state.body_budget = ByteBudget(settings.max_inflight_body_bytes)
    app.state.decode_limiter = anyio.CapacityLimiter(settings.decode_threads)


async def uploaded_images(request: Request, settings: SenderSettings) -> list[bytes]:
    """The image files of a raw ``image/*`` body or of a multipart form, in order."""
    kind = media_type(request)
    if not (kind.startswith("image/") or kind == "multipart/form-data"):
        raise UnsupportedMediaError(f"content type {kind or '(none)'!r} is not accepted", hint=_ACCEPTED)
    body = await read_body(request, max_bytes=settings.max_body_bytes)
    if kind.startswith("image/"):
        return [body]
    try:
        form = await request.form(max_files=settings.max_batch + 1)
    except StarletteHTTPException as exc:  # starlette's multipart parser reports problems this way
        if "Too many files" in str(exc.detail):
            raise TooLargeError(
                f"more than {settings.max_batch} images", hint=f"send at most {settings.max_batch}"
            ) from exc
        raise BadRequestError(f"malformed multipart body: {exc.detail}", hint=_ACCEPTED) from exc
    try:
        files: list[bytes] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(await value.read())
            elif name in IMAGE_FIELDS:  # an image part sent without a filename
                files.append(form_field_bytes(request, value))
        if not files:
            raise BadRequestError("the multipart body holds no file", hint="attach the image as a file field")
        if len(files) > settings.max_batch:
            raise TooLargeError(
                f"{len(files)} images, the limit is {settings.max_batch}",
                hint=f"send at most {settings.max_batch}",
            )
        return files
    finally:
        await form.close()  # the spooled upload files


async def load_digits(request: Request, images: list[bytes], *, preprocess: bool) -> np.ndarray:
    """Uploaded files → MNIST-style digits, uint8 (N, 28, 28)."""
    settings: SenderSettings = request.app.state.settings

    def load_all() -> np.ndarray:
        return np.stack(
            [load_digit(data, normalize=preprocess, max_pixels=settings.max_image_pixels) for data in images]
        )

    if len(images) == 1 and len(images[0]) <= INLINE_MAX_BYTES:
        limit = min(INLINE_MAX_PIXELS, settings.max_image_pixels)
        try:  # the size check reads the header before any pixel is decoded: a large image costs nothing
            return load_digit(images[0], normalize=preprocess, max_pixels=limit)[None]
        except TooLargeError:
            if limit == settings.max_image_pixels:
                raise
    return await anyio.to_thread.run_sync(load_all, limiter=request.app.state.decode_limiter)


async def encode_images(
    request: Request, batcher: EncodeBatcher, compressor: Compressor, *, preprocess: bool, batch: bool
) -> tuple[list[bytes], np.ndarray]:
    """Admit, read, decode and encode the request's images: their payloads, in order, and the
    digits (uint8 (N, 28, 28)) the encoder was given."""
    settings: SenderSettings = request.app.state.settings
    budget: ByteBudget = request.app.state.body_budget
    with batcher.admit(1) as admission, budget.hold(request, max_body_bytes=settings.max_body_bytes):
        images = await uploaded_images(request, settings)
        if not batch and len(images) != 1:
            raise BadRequestError(
                f"/encode takes one image, got {len(images)}", hint="send several images to /encode/batch"
            )
        if len(images) > 1:
            admission.grow(len(images) - 1)
        digits = await load_digits(request, images, preprocess=preprocess)
        results = await admission.run([(compressor, digit) for digit in digits])
    payloads = []
    for index, result in enumerate(results):
        if isinstance(result, LatentwireError):
            raise result.prefixed(f"image {index}: ") if batch else result
        if isinstance(result, Exception):
            raise result
        payloads.append(result)
    return payloads, digits


def _headers(compressor: Compressor) -> dict[str, str]:
    return {"X-Latentwire-Model": compressor.model_id, "X-Latentwire-Quality": str(compressor.level)}


def build_router(settings: SenderSettings | None = None, ladder: EncoderLadder | None = None) -> APIRouter:
    """The sender's routes, their OpenAPI document stating ``ladder``'s levels and ``settings``' limits.

    Without them (an app that loads its ladder at startup) the document is generic: any level
    0…15, no batch limit. The answers are the same either way.
    """
    compressor_param = Depends(compressor_dependency(ladder))
    router = APIRouter()

    @router.post(
        "/encode",
        summary="Encode one image into a code",
        response_model=EncodeResponse,
        responses={
            **error_responses(_ENCODE_ERRORS),
            200: {
                "content": {"application/octet-stream": {"schema": BINARY}},
                "description": "JSON, or the raw code with Accept: application/octet-stream",
            },
        },
        openapi_extra=_image_body(settings),
    )
    async def encode(
        request: Request,
        batcher: BatcherDep,
        compressor: Compressor = compressor_param,
        preprocess: bool = PreprocessQuery,
        with_input: bool = InputQuery,
    ) -> Response:
        (payload,), digits = await encode_images(
            request, batcher, compressor, preprocess=preprocess, batch=False
        )
        code = compressor.frame(payload)
        observe_code_sizes(request, compressor.level, (len(code),), denoise=compressor.denoise)
        if wants_octet_stream(request):
            return Response(code, media_type="application/octet-stream", headers=_headers(compressor))
        body = EncodeResponse(
            code=b64url_encode(code),
            bytes=len(code),
            model_id=compressor.model_id,
            quality=compressor.level,
            # the very array the encoder was given, as a PNG like the receiver's (~0.1 ms)
            input=b64url_encode(png_bytes(digits[0])) if with_input else None,
        )
        answer = body.model_dump_json(exclude_none=True)  # no "input": null unless asked for
        return Response(answer, media_type="application/json", headers=_headers(compressor))

    @router.post(
        "/encode/batch",
        summary="Encode several images; codes come back in upload order",
        response_model=EncodeBatchResponse,
        responses={
            **error_responses(_ENCODE_BATCH_ERRORS),
            200: {
                "content": {bitstream.BATCH_MEDIA_TYPE: {"schema": BINARY}},
                "description": f"JSON, or a {bitstream.BATCH_MEDIA_TYPE} container (codes sharing one "
                "header) with Accept: application/octet-stream",
            },
        },
        openapi_extra=_batch_body(settings),
    )
    async def encode_batch(
        request: Request,
        batcher: BatcherDep,
        compressor: Compressor = compressor_param,
        preprocess: bool = PreprocessQuery,
    ) -> Response:
        if media_type(request) != "multipart/form-data":
            raise UnsupportedMediaError(
                f"content type {media_type(request) or '(none)'!r} is not accepted",
                hint="send the images as multipart/form-data files",
            )
        payloads, _ = await encode_images(request, batcher, compressor, preprocess=preprocess, batch=True)
        sizes = [len(p) + compressor.framing_bytes for p in payloads]
        observe_code_sizes(request, compressor.level, sizes, denoise=compressor.denoise)
        if wants_octet_stream(request):
            container = compressor.pack_batch(payloads)
            return Response(container, media_type=bitstream.BATCH_MEDIA_TYPE, headers=_headers(compressor))
        codes = [compressor.frame(p) for p in payloads]
        body = EncodeBatchResponse(
            model_id=compressor.model_id,
            quality=compressor.level,
            codes=[EncodedCode(code=b64url_encode(c), bytes=len(c)) for c in codes],
        )
        return Response(body.model_dump_json(), media_type="application/json", headers=_headers(compressor))

    @router.get("/v1/model", summary="The loaded encoder checkpoints: the default and every level")
    async def model(ladder: LadderDep) -> ModelInfo:
        return model_info(ladder, half="encoder", default_quality=ladder.default_quality)

    return router


#: The routes with a generic document (any level 0…15); ``build_router(settings, ladder)`` is exact.
router = build_router()


__all__ = ["build_router", "router", "startup"]
