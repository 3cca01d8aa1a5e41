"""The API's error answers: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""

from __future__ import annotations

from typing import Any

# The HTTP status the API uses for each error type.
STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
ERROR_TYPE_OF_STATUS = {status: error_type for error_type, status in STATUS_OF_ERROR_TYPE.items()}


class ApiError(Exception):
    """An error the emulator answers with, as the real API would.

    :param error_type: the API's error type, e.g. ``"invalid_request_error"``.
    :param message: what went wrong, as the client will read it.
    :param status: HTTP status; defaults to the API's status for ``error_type``.
    :param headers: extra response headers (e.g. ``retry-after``).
    :param error_code: the API's ``error.details.error_code`` (e.g. ``enforced_spend_limit_reached``),
        or ``None`` for an error without details.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.error_type = error_type
        self.message = message
        self.status = status if status is not None else STATUS_OF_ERROR_TYPE.get(error_type, 500)
        self.headers = headers or {}


def error_body(
    error_type: str, message: str, request_id: str | None, error_code: str | None = None
) -> dict[str, Any]:
    """Return the API's error envelope (with ``details.error_code`` when the error has a code)."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": request_id}


def not_found(batch_id: str) -> ApiError:
    """The answer for an id the emulator does not know (never created, or deleted)."""
    return ApiError("not_found_error", f"message_batch {batch_id} not found")


def too_large(size: int, limit: int) -> ApiError:
    """The answer for a create body over the byte limit."""
    return ApiError(
        "request_too_large",
        f"Request exceeds the maximum allowed number of bytes: the body is {size} bytes, a batch allows "
        f"at most {limit}; split the requests into more batches",
    )
