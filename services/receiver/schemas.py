"""Request and response bodies of the receiver."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="a code as the sender returned it, base64url (padding optional)")


class DecodeBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: list[str] = Field(description="codes, base64url; the images come back in the same order")


class DecodeBatchResponse(BaseModel):
    model_ids: list[str] = Field(description="the model that made each code")
    images: list[str] = Field(description="one PNG per code, standard base64, in request order")
