"""The sender's routes: images in, codes out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentwire import bitstream
from latentwire.codec import Compressor
from latentwire.errors import BadRequestError, TooLargeError, UnsupportedMediaError
from latentwire.preprocess import load_digit
from latentwire.web import (
    ERROR_RESPONSES,
    ModelInfo,
    b64url_encode,
    media_type,
    model_info,
    read_body,
    wants_octet_stream,
)
from latentwire_sender.deps import CompressorDep, LadderDep, SettingsDep
from latentwire_sender.schemas import EncodeBatchResponse, EncodedCode, EncodeResponse
from latentwire_sender.settings import SenderSettings

router = APIRouter()
T = TypeVar("T")

_IMAGE_BODY = {
    "requestBody": {
        "description": "one image (PNG, JPEG, BMP, GIF, TIFF, WebP…) as the raw body with an image/* content "
        "type, or as a multipart/form-data file",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "description": "several images as multipart/form-data files (field name `files`, repeated)",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}
_ACCEPTED = (
    "send the image as the raw body with Content-Type image/png (image/jpeg, …), or as multipart/form-data"
)
PreprocessQuery = Query(
    True,
    description="normalize like MNIST (grayscale, invert light backgrounds, fit the digit in 20×20, "
    "center by mass in 28×28); false sends the pixels as they are and requires a 28×28 image",
)


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
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise BadRequestError("the multipart body holds no file", hint="attach the image as a file field")
        if len(files) > settings.max_batch:
            raise TooLargeError(
                f"{len(files)} images, the limit is {settings.max_batch}",
                hint=f"send at most {settings.max_batch}",
            )
        return [await f.read() for f in files]
    finally:
        await form.close()  # the spooled upload files


async def encode_uploads(
    images: list[bytes], settings: SenderSettings, *, preprocess: bool, encode: Callable[[np.ndarray], T]
) -> T:
    """Uploaded files → MNIST-style digits uint8 (N, 28, 28) → ``encode``; one trip off the event loop."""

    def work() -> T:
        pixels = [
            load_digit(data, normalize=preprocess, max_pixels=settings.max_image_pixels) for data in images
        ]
        return encode(np.stack(pixels))

    return await run_in_threadpool(work)


def _headers(compressor: Compressor) -> dict[str, str]:
    return {"X-Latentwire-Model": compressor.model_id, "X-Latentwire-Quality": str(compressor.level)}


@router.post(
    "/encode",
    summary="Encode one image into a code",
    response_model=EncodeResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"application/octet-stream": {}},
            "description": "JSON, or the raw code with Accept: application/octet-stream",
        },
    },
    openapi_extra=_IMAGE_BODY,
)
async def encode(
    request: Request,
    compressor: CompressorDep,
    settings: SettingsDep,
    preprocess: bool = PreprocessQuery,
) -> Response:
    images = await uploaded_images(request, settings)
    if len(images) != 1:
        raise BadRequestError(
            f"/encode takes one image, got {len(images)}", hint="send several images to /encode/batch"
        )
    (code,) = await encode_uploads(images, settings, preprocess=preprocess, encode=compressor.compress)
    if wants_octet_stream(request):
        return Response(code, media_type="application/octet-stream", headers=_headers(compressor))
    body = EncodeResponse(
        code=b64url_encode(code), bytes=len(code), model_id=compressor.model_id, quality=compressor.level
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_headers(compressor))


@router.post(
    "/encode/batch",
    summary="Encode several images; codes come back in upload order",
    response_model=EncodeBatchResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {bitstream.BATCH_MEDIA_TYPE: {}},
            "description": f"JSON, or a {bitstream.BATCH_MEDIA_TYPE} container (codes sharing one header) "
            "with Accept: application/octet-stream",
        },
    },
    openapi_extra=_BATCH_BODY,
)
async def encode_batch(
    request: Request,
    compressor: CompressorDep,
    settings: SettingsDep,
    preprocess: bool = PreprocessQuery,
) -> Response:
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaError(
            f"content type {media_type(request) or '(none)'!r} is not accepted",
            hint="send the images as multipart/form-data files",
        )
    images = await uploaded_images(request, settings)
    if wants_octet_stream(request):
        container = await encode_uploads(
            images, settings, preprocess=preprocess, encode=compressor.compress_batch
        )
        return Response(container, media_type=bitstream.BATCH_MEDIA_TYPE, headers=_headers(compressor))
    codes = await encode_uploads(images, settings, preprocess=preprocess, encode=compressor.compress)
    body = EncodeBatchResponse(
        model_id=compressor.model_id,
        quality=compressor.level,
        codes=[EncodedCode(code=b64url_encode(c), bytes=len(c)) for c in codes],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_headers(compressor))


@router.get("/v1/model", summary="The loaded encoder checkpoints: the default and every level")
async def model(ladder: LadderDep) -> ModelInfo:
    return model_info(ladder, half="encoder", default_quality=ladder.default_quality)
