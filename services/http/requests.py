"""Reading requests: content types, bounded bodies, base64url codes."""

from __future__ import annotations

import base64
import binascii
import codecs

from fastapi import Request

from latentwire.errors import BadCodeError, BadRequestError, TooLargeError

__all__ = [
    "B64URL_PATTERN",
    "CODE_FORMAT",
    "b64url_decode",
    "b64url_encode",
    "form_field_bytes",
    "media_type",
    "read_body",
    "wants_octet_stream",
]

#: What ``b64url_decode`` reads: base64url of whole bytes (a length of 1 mod 4 is none), padding optional.
B64URL_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}(?:==)?|[A-Za-z0-9_-]{3}=?)?$"
#: The OpenAPI ``format`` of a code string: a code as /encode made it, base64url.
CODE_FORMAT = "latentwire-code"


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower-cased ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def wants_octet_stream(request: Request) -> bool:
    return "application/octet-stream" in request.headers.get("accept", "").lower()


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The whole body, refusing more than ``max_bytes`` before reading it all; empty bodies too.

    The body is cached on the request, so ``await request.form()`` afterwards parses it from
    memory instead of reading an unbounded stream.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(
            f"the body is {declared} bytes, the limit is {max_bytes}", hint=f"send at most {max_bytes} bytes"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLargeError(
                f"the body exceeds the limit of {max_bytes} bytes", hint=f"send at most {max_bytes} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise BadRequestError("the request body is empty", hint="send an image (or a code) in the body")
    request._body = body  # starlette's own cache: form() and json() reuse it
    return body


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; anything else is a BadCodeError."""
    cleaned = text.strip()
    if not cleaned:
        raise BadCodeError("the code is empty")
    if "+" in cleaned or "/" in cleaned:
        raise BadCodeError(
            "the code is standard base64, not base64url", hint="use - and _ instead of + and /"
        )
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadCodeError(f"the code is not valid base64url: {exc}") from exc


def form_field_bytes(request: Request, text: str) -> bytes:
    """The bytes of a multipart part that starlette read as a text field (a part without a filename).

    Starlette decodes such a part with the body's charset (``charset=`` of its Content-Type,
    default UTF-8), falling back to Latin-1 where that fails; this undoes whichever it did, so a
    binary part sent without a filename (RFC 7578 makes it optional) arrives byte for byte.
    """
    charset = "utf-8"
    for param in request.headers.get("content-type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or charset
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    try:
        raw = text.encode("latin-1")
        raw.decode(charset)
    except UnicodeEncodeError:  # characters over U+00FF: it was decoded with the charset
        return text.encode(charset)
    except UnicodeDecodeError:  # not valid in the charset: starlette fell back to Latin-1
        return raw
    return text.encode(charset)
