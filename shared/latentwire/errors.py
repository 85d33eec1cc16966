"""The exceptions latentwire raises on bad input, and what each means to an HTTP client.

    LatentwireError                  base; never raised itself
    ├── BadImageError         (422)  the bytes are not a decodable image, or it has the wrong size
    ├── UnsupportedMediaError (415)  a content type the endpoint does not accept
    ├── TooLargeError         (413)  body, pixels or batch over the configured limit
    ├── BadRequestError       (400)  a malformed request: empty body, bad JSON, bad parameter
    ├── BadCodeError          (422)  a code that is truncated, corrupted or otherwise malformed
    │   └── UnsupportedVersionError  a code of a format version this build cannot read
    ├── ForeignModelError     (409)  a well-formed code made by another model
    ├── BadCheckpointError           a checkpoint file that is missing, corrupt or of the wrong half
    └── DataUnavailableError         MNIST could not be found, fetched or verified

Every error carries a machine-readable ``code`` and a ``hint`` saying what is accepted, so the
services can answer with one JSON shape: ``{"error": code, "detail": message, "hint": hint}``.
"""

from __future__ import annotations

__all__ = [
    "BadCheckpointError",
    "BadCodeError",
    "BadImageError",
    "BadRequestError",
    "DataUnavailableError",
    "ForeignModelError",
    "LatentwireError",
    "TooLargeError",
    "UnsupportedMediaError",
    "UnsupportedVersionError",
]


class LatentwireError(Exception):
    """Base of every error latentwire raises on purpose."""

    code: str = "latentwire_error"
    status: int = 400
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def to_dict(self) -> dict[str, str]:
        """The JSON body the services send for this error."""
        return {"error": self.code, "detail": self.message, "hint": self.hint}


class BadImageError(LatentwireError):
    code = "bad_image"
    status = 422
    default_hint = "send a PNG, JPEG, BMP, GIF, TIFF or WebP image"


class UnsupportedMediaError(LatentwireError):
    code = "unsupported_media_type"
    status = 415


class TooLargeError(LatentwireError):
    code = "too_large"
    status = 413


class BadRequestError(LatentwireError):
    code = "bad_request"
    status = 400


class BadCodeError(LatentwireError):
    code = "bad_code"
    status = 422
    default_hint = "send a code exactly as the sender returned it (raw bytes, or base64url in JSON)"


class UnsupportedVersionError(BadCodeError):
    code = "unsupported_version"
    default_hint = "this receiver reads code format versions 1 and 2"


class ForeignModelError(LatentwireError):
    code = "foreign_model"
    status = 409
    default_hint = "decode the code with the receiver whose model made it (see GET /v1/model)"


class BadCheckpointError(LatentwireError):
    code = "bad_checkpoint"
    status = 500
    default_hint = (
        "point at a checkpoint written by latentwire-train (encoder.safetensors / decoder.safetensors)"
    )


class DataUnavailableError(LatentwireError):
    code = "data_unavailable"
    status = 503
