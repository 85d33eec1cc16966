"""The exceptions latentwire raises on bad input.

    LatentwireError                  base; never raised itself
    ├── BadImageError                the bytes are not a decodable image, or it has the wrong size
    ├── UnsupportedMediaError        a content type the caller does not accept
    ├── TooLargeError                body, pixels or batch over the configured limit
    ├── BadRequestError              a malformed request: empty body, bad JSON, bad parameter
    ├── BadCodeError                 a code that is truncated, corrupted or otherwise malformed
    │   └── UnsupportedVersionError  a code of a format version this build cannot read
    ├── ForeignModelError            a well-formed code made by another model
    │   └── RetiredModelError        … by a model its level served before it was retrained
    ├── BadCheckpointError           a checkpoint file that is missing, corrupt or of the wrong half
    └── DataUnavailableError         MNIST could not be found, fetched or verified

Every error carries a machine-readable ``code`` and a ``hint`` saying what is accepted, so a
caller can report any of them in one shape: ``{"error": code, "detail": message, "hint": hint}``.
The model package knows no HTTP: the services map each class to a status (``latentwire_http``).
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
    "RetiredModelError",
    "TooLargeError",
    "UnsupportedMediaError",
    "UnsupportedVersionError",
]


class LatentwireError(Exception):
    """Base of every error latentwire raises on purpose."""

    code: str = "latentwire_error"
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def prefixed(self, where: str) -> LatentwireError:
        """The same error with ``where`` before its message, e.g. to name the culprit of a batch."""
        return type(self)(where + self.message, hint=self.hint)

    def to_dict(self) -> dict[str, str]:
        """The JSON body the services send for this error."""
        return {"error": self.code, "detail": self.message, "hint": self.hint}


class BadImageError(LatentwireError):
    code = "bad_image"
    default_hint = "send a PNG, JPEG, BMP, GIF, TIFF or WebP image"


class UnsupportedMediaError(LatentwireError):
    code = "unsupported_media_type"


class TooLargeError(LatentwireError):
    code = "too_large"


class BadRequestError(LatentwireError):
    code = "bad_request"


class BadCodeError(LatentwireError):
    code = "bad_code"
    default_hint = "send a code exactly as the sender returned it (raw bytes, or base64url in JSON)"


class UnsupportedVersionError(BadCodeError):
    code = "unsupported_version"
    default_hint = "this receiver reads code format versions 1 and 7"


class ForeignModelError(LatentwireError):
    code = "foreign_model"
    default_hint = "decode the code with the receiver whose model made it (see GET /v1/model)"


class RetiredModelError(ForeignModelError):
    code = "retired_model"
    default_hint = "re-encode the digit with a current sender; GET /v1/model names the models served"


class BadCheckpointError(LatentwireError):
    code = "bad_checkpoint"
    default_hint = (
        "point at a checkpoint written by latentwire-train (encoder.safetensors / decoder.safetensors)"
    )


class DataUnavailableError(LatentwireError):
    code = "data_unavailable"
