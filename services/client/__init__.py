"""latentwire client: ``LatentwireClient``, ``AsyncLatentwireClient`` and the ``latentwire`` CLI."""

from latentwire_client.client import (
    AsyncLatentwireClient,
    LatentwireClient,
    RetryPolicy,
    ServiceConnectionError,
    ServiceError,
)

__all__ = [
    "AsyncLatentwireClient",
    "LatentwireClient",
    "RetryPolicy",
    "ServiceConnectionError",
    "ServiceError",
]
