"""The receiver's routes: codes in, PNG digits out.

A request is admitted first (room in the decoder's queue; else 503), its codes' framing is
checked on the event loop (cheap, and a bad code is refused before any work), and the payloads
join the next micro-batch of the decoder, which also makes the PNGs.
"""

from __future__ import annotations

import base64
from typing import TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ValidationError

from latentwire import bitstream
from latentwire.errors import BadRequestError, LatentwireError, TooLargeError, UnsupportedMediaError
from latentwire.ladder import DecoderLadder
from latentwire_http.batching import Admission
from latentwire_http.requests import b64url_decode, media_type, read_body
from latentwire_http.schemas import ERROR_RESPONSES, ModelInfo, model_info
from latentwire_receiver.deps import BatcherDep, DecodeItem, LadderDep, SettingsDep
from latentwire_receiver.schemas import DecodeBatchRequest, DecodeBatchResponse, DecodeRequest
from latentwire_receiver.settings import ReceiverSettings

router = APIRouter()
Model = TypeVar("Model", bound=BaseModel)

_SINGLE_HINT = 'send the raw code as application/octet-stream, or JSON {"code": "<base64url>"}'
_BATCH_HINT = f'send JSON {{"codes": ["<base64url>", ...]}} or a {bitstream.BATCH_MEDIA_TYPE} container'
ScaleQuery = Query(1, ge=1, description="integer nearest-neighbour upscale of the 28×28 output, for viewing")


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


@router.post(
    "/decode",
    summary="Decode one code into a 28×28 grayscale PNG",
    response_class=Response,
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"image/png": {}}, "description": "the reconstructed digit"},
    },
    openapi_extra={
        "requestBody": {
            "description": 'the code as raw bytes (application/octet-stream) or JSON {"code": base64url}',
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": DecodeRequest.model_json_schema()},
            },
        }
    },
)
async def decode(
    request: Request, ladder: LadderDep, settings: SettingsDep, batcher: BatcherDep, scale: int = ScaleQuery
) -> Response:
    _check_scale(scale, settings)
    kind = media_type(request)
    if kind not in ("application/octet-stream", "application/json"):
        raise UnsupportedMediaError(f"content type {kind or '(none)'!r} is not accepted", hint=_SINGLE_HINT)
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
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "description": f'JSON {{"codes": [base64url, …]}}, or a {bitstream.BATCH_MEDIA_TYPE} container',
            "content": {
                "application/json": {"schema": DecodeBatchRequest.model_json_schema()},
                bitstream.BATCH_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def decode_batch(
    request: Request, ladder: LadderDep, settings: SettingsDep, batcher: BatcherDep, scale: int = ScaleQuery
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
