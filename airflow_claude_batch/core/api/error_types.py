"""The API's error types for one request: which a later attempt may get past."""

from __future__ import annotations

#: Error types that a later attempt may get past: capacity and transient server errors. Everything
#: else (invalid_request_error, not_found_error, permission_error, authentication_error,
#: request_too_large, billing_error, and any type this package does not know) needs a change first.
RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


def is_retryable_error(error_type: str | None) -> bool:
    """Return whether a request that failed with ``error_type`` may succeed when sent again as is."""
    return error_type in RETRYABLE_ERROR_TYPES
