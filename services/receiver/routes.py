"""The receiver's routes: codes in, PNG digits out.

A request is admitted first (room in the decoder's queue; else 503), its codes' framing is
checked on the event loop (cheap, and a bad code is refused before any work), and the payloads
join the next micro-batch of the decoder, which also makes the PNGs.
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ValidationError

from latentwire import bitstream
from latentwire.errors import BadRequestError, LatentwireError, TooLargeError, UnsupportedMediaError
from latentwire.ladder import DecoderLadder
from latentwire_http.batching import Admission
from latentwire_http.requests import b64url_decode, media_type, read_body
from latentwire_http.schemas import BINARY, ModelInfo, error_responses, model_info
from latentwire_receiver.deps import BatcherDep, DecodeItem, LadderDep, SettingsDep
from latentwire_receiver.schemas import (
    DecodeBatchRequest,
    DecodeBatchResponse,
    DecodeRequest,
    decode_batch_request_schema,
)
from latentwire_receiver.settings import ReceiverSettings

Model = TypeVar("Model", bound=BaseModel)

_SINGLE_HINT = 'send the raw code as application/octet-stream, or JSON {"code": "<base64url>"}'
_BATCH_HINT = f'send JSON {{"codes": ["<base64url>", ...]}} or a {bitstream.BATCH_MEDIA_TYPE} container'
_SCALE_TEXT = "integer nearest-neighbour upscale of the 28×28 output, for viewing"
#: ?scale= of an app built without settings; ``build_router`` documents the service's own limit.
ScaleQuery = Query(1, ge=1, description=_SCALE_TEXT)


def _parse_json(schema: type[Model], body: bytes, *, hint: str) -> Model:
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequestError(f"invalid JSON body: {problems}", hint=hint) from exc


def _check_scale(scale: int, settings: ReceiverSettings) -> None:
    if scale > settings.max_scale:
        raise BadRequestError(
            f"scale {scale} is over the limit", hint=f"use a scale from 1 to {settings.max_scale}"
        )


async def _decode_pngs(
    codes: list[bytes], ladder: DecoderLadder, admission: Admission[DecodeItem, bytes], scale: int
) -> tuple[list[bytes], list[str]]:
    """PNGs and the model id of each code; every code's framing is checked before any is decoded."""
    if len(codes) > 1:
        admission.grow(len(codes) - 1)
    items = []
    for index, code in enumerate(codes):
        try:
            model, payload = ladder.open(code)
        except LatentwireError as exc:
            if len(codes) > 1:
                raise exc.prefixed(f"code {index}: ") from exc
            raise
        items.append(DecodeItem(model, payload, scale))
    results = await admission.run(items)
    pngs = []
    for index, result in enumerate(results):
        if isinstance(result, LatentwireError):
            raise result.prefixed(f"code {index}: ") if len(codes) > 1 else result
        if isinstance(result, Exception):
            raise result
        pngs.append(result)
    return pngs, [item.model.model_id for item in items]


async def _batch_codes(
    request: Request, ladder: DecoderLadder, settings: ReceiverSettings, kind: str
) -> list[bytes]:
    """The codes of a batch request: a container, or JSON of base64url codes."""
    body = await read_body(request, max_bytes=settings.max_body_bytes)
    if kind == bitstream.BATCH_MEDIA_TYPE:
        codes = ladder.unpack_batch(body, max_codes=settings.max_batch)
    else:
        texts = _parse_json(DecodeBatchRequest, body, hint=_BATCH_HINT).codes
        if len(texts) > settings.max_batch:
            raise TooLargeError(
                f"{len(texts)} codes, the limit is {settings.max_batch}",
                hint=f"send at most {settings.max_batch}",
            )
        codes = []
        for index, text in enumerate(texts):
            try:
                codes.append(b64url_decode(text))
            except LatentwireError as exc:
                raise exc.prefixed(f"code {index}: ") from exc
    if not codes:
        raise BadRequestError("the batch holds no code", hint="send at least one code")
    return codes


def scale_query(max_scale: int | None) -> Any:
    """``?scale=``: 1…``max_scale`` in the OpenAPI document.

    The route checks the maximum itself (400 with the limit in the hint); FastAPI checks the
    type and the minimum (422).
    """
    if max_scale is None:
        return ScaleQuery
    return Query(
        1,
        ge=1,
        description=f"{_SCALE_TEXT}; 1 to {max_scale} (over {max_scale}: 400)",
        json_schema_extra={"maximum": max_scale},
    )


def _decode_body(max_body_bytes: int | None) -> dict[str, Any]:
    limit = f" (at most {max_body_bytes} bytes)" if max_body_bytes is not None else ""
    return {
        "requestBody": {
            "required": True,
            "description": "the code as raw bytes (application/octet-stream), as /encode returned it, "
            f'or JSON {{"code": base64url}}{limit}',
            "content": {
                "application/octet-stream": {"schema": {**BINARY, "minLength": 1}},
                "application/json": {"schema": DecodeRequest.model_json_schema()},
            },
        }
    }


def _decode_batch_body(max_batch: int | None, max_body_bytes: int | None) -> dict[str, Any]:
    limit = f" (at most {max_body_bytes} bytes)" if max_body_bytes is not None else ""
    count = f"1 to {max_batch}" if max_batch is not None else "at least 1"
    return {
        "requestBody": {
            "required": True,
            "description": f'JSON {{"codes": [base64url, …]}} with {count} codes, or an '
            f"{bitstream.BATCH_MEDIA_TYPE} container as /encode/batch returns it{limit}",
            "content": {
                "application/json": {"schema": decode_batch_request_schema(max_batch)},
                bitstream.BATCH_MEDIA_TYPE: {"schema": {**BINARY, "minLength": 1}},
            },
        }
    }


_DECODE_ERRORS = {
    400: "empty body, malformed or invalid JSON body, or ?scale= over the limit (error bad_request)",
    409: "the code was made by a model (or level) this receiver does not serve (error foreign_model), "
    "or by a model its level served before it was retrained (error retired_model)",
    413: "the body is over the limit (error too_large)",
    415: "a content type other than application/octet-stream or application/json "
    "(error unsupported_media_type)",
    422: "not a code: truncated, padded, corrupted or not base64url (error bad_code), a code format "
    "version this receiver cannot read (error unsupported_version), or a query parameter of the wrong "
    "type or under its minimum (error bad_request)",
    503: "the decoder's queue is full: retry after the Retry-After header's seconds (error overloaded)",
}
_DECODE_BATCH_ERRORS = {
    **_DECODE_ERRORS,
    400: "empty body, malformed or invalid JSON body, a batch without codes, or ?scale= over the limit "
    "(error bad_request)",
    409: "a code (or the container's header) names a model or level this receiver does not serve "
    "(error foreign_model), or was made by a model its level served before it was retrained "
    "(error retired_model)",
    413: "the body, or the number of codes, is over the limit (error too_large)",
    415: f"a content type other than application/json or {bitstream.BATCH_MEDIA_TYPE} "
    "(error unsupported_media_type)",
    422: "a code (or the container) is truncated, corrupted or not base64url (error bad_code; the "
    "detail names the code's index), a code format version this receiver cannot read "
    "(error unsupported_version), or a query parameter of the wrong type or under its minimum "
    "(error bad_request)",
}


def build_router(settings: ReceiverSettings | None = None) -> APIRouter:
    """The receiver's routes, their OpenAPI document stating ``settings``' limits.

    Without ``settings`` (an app whose settings are not known yet) the limits are left out.
    """
    max_scale = settings.max_scale if settings is not None else None
    max_batch = settings.max_batch if settings is not None else None
    max_body = settings.max_body_bytes if settings is not None else None
    scale_param = scale_query(max_scale)
    router = APIRouter()

    @router.post(
        "/decode",
        summary="Decode one code into a 28×28 grayscale PNG",
        response_class=Response,
        responses={
            **error_responses(_DECODE_ERRORS),
            200: {
                "content": {"image/png": {"schema": BINARY}},
                "description": "the reconstructed digit (28·scale × 28·scale, grayscale)",
            },
        },
        openapi_extra=_decode_body(max_body),
    )
    async def decode(
        request: Request,
        ladder: LadderDep,
        settings: SettingsDep,
        batcher: BatcherDep,
        scale: int = scale_param,
    ) -> Response:
        _check_scale(scale, settings)
        kind = media_type(request)
        if kind not in ("application/octet-stream", "application/json"):
            raise UnsupportedMediaError(
                f"content type {kind or '(none)'!r} is not accepted", hint=_SINGLE_HINT
            )
        with batcher.admit() as admission:
            body = await read_body(request, max_bytes=settings.max_body_bytes)
            code = (
                body
                if kind == "application/octet-stream"
                else b64url_decode(_parse_json(DecodeRequest, body, hint=_SINGLE_HINT).code)
            )
            (png,), (model_id,) = await _decode_pngs([code], ladder, admission, scale)
        return Response(png, media_type="image/png", headers={"X-Latentwire-Model": model_id})

    @router.post(
        "/decode/batch",
        summary="Decode several codes; PNGs come back base64-encoded in a JSON list, in order",
        response_model=DecodeBatchResponse,
        responses=error_responses(_DECODE_BATCH_ERRORS),
        openapi_extra=_decode_batch_body(max_batch, max_body),
    )
    async def decode_batch(
        request: Request,
        ladder: LadderDep,
        settings: SettingsDep,
        batcher: BatcherDep,
        scale: int = scale_param,
    ) -> DecodeBatchResponse:
        _check_scale(scale, settings)
        kind = media_type(request)
        if kind not in ("application/json", bitstream.BATCH_MEDIA_TYPE):
            raise UnsupportedMediaError(
                f"content type {kind or '(none)'!r} is not accepted",
                hint=_BATCH_HINT,
            )
        with batcher.admit() as admission:
            codes = await _batch_codes(request, ladder, settings, kind)
            pngs, model_ids = await _decode_pngs(codes, ladder, admission, scale)
        return DecodeBatchResponse(
            model_ids=model_ids, images=[base64.b64encode(p).decode("ascii") for p in pngs]
        )

    @router.get("/v1/model", summary="The loaded decoder checkpoints: every level")
    async def model(ladder: LadderDep) -> ModelInfo:
        return model_info(ladder, half="decoder", default_quality=None)

    return router


#: The routes with the limits left out of the document; ``build_router(settings)`` states them.
router = build_router()
