"""Response bodies of the sender."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EncodedCode(BaseModel):
    code: str = Field(description="the code, base64url without padding")
    bytes: int = Field(description="length of the code in bytes")


class EncodeResponse(EncodedCode):
    model_id: str = Field(description="the model that made the code; the receiver must serve the same one")
    quality: int = Field(description="the quality level of that model")
    input: str | None = Field(
        default=None,
        description="only with ?input=true: the 28×28 grayscale PNG of the digit the code was made from "
        "(after the sender's preprocessing; the array the encoder was given), base64url without padding",
    )


class EncodeBatchResponse(BaseModel):
    model_id: str
    quality: int
    codes: list[EncodedCode] = Field(description="one code per uploaded image, in upload order")
