"""Response bodies both services share: the error shape and what GET /v1/model says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from latentwire.codec import ModelHalf
from latentwire.ladder import Ladder

__all__ = [
    "BINARY",
    "ERROR_RESPONSES",
    "ErrorBody",
    "LevelInfo",
    "ModelInfo",
    "error_responses",
    "model_info",
]

#: The schema of a raw body or a multipart file: bytes.
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


class ErrorBody(BaseModel):
    """Every 4xx answer has this shape."""

    error: str = Field(
        description="machine-readable error code, e.g. bad_code, foreign_model, retired_model, too_large"
    )
    detail: str = Field(description="what was wrong")
    hint: str = Field(description="what is accepted instead")


class LevelInfo(BaseModel):
    """One checkpoint of the ladder."""

    quality: int = Field(description="the quality level (?quality=); 0 is the tutorial's v1 model")
    denoise: bool = Field(description="trained to remove noise from its input (?denoise=true)")
    model_id: str
    retired_model_ids: list[str] = Field(
        description="the models this level served before it was retrained (their codes: 409 retired_model)"
    )
    preset: str
    latent_shape: list[int]
    code_format_version: int
    code_bytes: float | None = Field(description="mean code size on the MNIST test set, framing included")
    psnr: float | None = Field(description="PSNR (dB) of the mean MSE over the MNIST test set")
    metrics: dict[str, float] = Field(description="every test-set metric the trainer recorded")
    data_checksum: str
    training: dict[str, Any]


class ModelInfo(BaseModel):
    """What GET /v1/model says: the default model's identity, and every level served."""

    half: str = Field(description="encoder (the sender) or decoder (the receiver)")
    default_quality: int | None = Field(description="the level /encode uses without ?quality= (sender only)")
    model_id: str = Field(description="the default level's model id")
    preset: str
    latent_shape: list[int]
    code_format_version: int
    metrics: dict[str, float]
    levels: list[LevelInfo]


#: What each status means when a route does not say more.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "malformed request",
    409: "code from another model",
    413: "too large",
    415: "unsupported content type",
    422: "not an image / bad code",
    503: "overloaded: retry after the Retry-After header's seconds",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


def error_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route's refusals: status → what it means there, with ``ErrorBody``.

    A route lists exactly the statuses it can answer; a 503 also documents its Retry-After header.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status, text in descriptions.items():
        if status not in ERROR_DESCRIPTIONS:
            raise ValueError(f"not an error status of these services: {status}")
        response: dict[str, Any] = {"model": ErrorBody, "description": text}
        if status == 503:
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


#: Every refusal status with a generic description (kept for callers that need no more).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = error_responses(ERROR_DESCRIPTIONS)


def model_info(ladder: Ladder[Any], *, half: str, default_quality: int | None) -> ModelInfo:
    """GET /v1/model's answer for a ladder of checkpoint halves."""
    models: list[ModelHalf] = ladder.levels()
    default: ModelHalf = ladder.default
    levels = [
        LevelInfo(
            quality=m.level,
            denoise=m.denoise,
            model_id=m.model_id,
            retired_model_ids=list(m.retired_model_ids),
            preset=str(m.meta.preset.get("name", "")),
            latent_shape=list(m.latent_shape),
            code_format_version=m.format_version,
            code_bytes=m.meta.metrics.get("code_bytes"),
            psnr=m.meta.metrics.get("psnr"),
            metrics=m.meta.metrics,
            data_checksum=m.meta.data_checksum,
            training=m.meta.training,
        )
        for m in models
    ]
    return ModelInfo(
        half=half,
        default_quality=default_quality,
        model_id=default.model_id,
        preset=str(default.meta.preset.get("name", "")),
        latent_shape=list(default.latent_shape),
        code_format_version=default.format_version,
        metrics=default.meta.metrics,
        levels=levels,
    )
