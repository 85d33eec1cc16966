"""Request and response bodies of the receiver.

The request models validate only the shape (a string, a list of strings); what a code string may
hold (base64url, at least one character) is in their JSON schema, and the route itself refuses
a string that is not a code: 422 ``bad_code``, the same answer as for a corrupted raw code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from latentwire_http.requests import B64URL_PATTERN, CODE_FORMAT

_CODE: dict[str, Any] = {"format": CODE_FORMAT, "minLength": 1, "pattern": B64URL_PATTERN}


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="a code as the sender returned it, base64url (padding optional)", json_schema_extra=_CODE
    )


class DecodeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: list[str] = Field(
        description="codes, base64url; the images come back in the same order",
        json_schema_extra={"minItems": 1, "items": {"type": "string", **_CODE}},
    )


def decode_batch_request_schema(max_batch: int | None) -> dict[str, Any]:
    """``DecodeBatchRequest``'s JSON schema with the service's batch limit as ``maxItems``."""
    schema = DecodeBatchRequest.model_json_schema()
    if max_batch is not None:
        schema["properties"]["codes"]["maxItems"] = max_batch
    return schema


class DecodeBatchResponse(BaseModel):
    model_ids: list[str] = Field(description="the model that made each code")
    images: list[str] = Field(description="one PNG per code, standard base64, in request order")
