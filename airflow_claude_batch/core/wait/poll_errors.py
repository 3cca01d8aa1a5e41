"""Why a poll failed: API and connection errors reduced to what the waiting logic needs.

:func:`poll_error_from_exception` turns what the SDK (or this package's hook) raised into a
:class:`PollError` (with the ``retry-after`` the API asked for); :func:`parse_batch` reads a poll's
body. No I/O: the trigger, the sensor and the hook call them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.api.headers import parse_retry_after
from airflow_claude_batch.exceptions import BatchNotFoundError, ConnectionConfigError

# HTTP statuses a later poll may not see again; 408/409 are retried by the SDK itself for the same reason.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_OVERLOADED_STATUS = 529


class ErrorKind(str, enum.Enum):
    """Why a poll failed, as far as the waiting logic cares."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    NOT_FOUND = "not_found"
    AUTH = "auth"
    #: The Airflow connection itself is missing or unusable (nothing was sent to the API).
    CONNECTION_CONFIG = "connection_config"
    REJECTED = "rejected"

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT_KINDS


_TRANSIENT_KINDS = frozenset(
    {ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.SERVER_ERROR, ErrorKind.CONNECTION}
)


@dataclass(frozen=True)
class PollError:
    """A failed poll, reduced to what the decision needs.

    :param kind: the class of failure.
    :param status: the HTTP status, when there was a response.
    :param retry_after: seconds the API asked to wait (``retry-after`` / ``retry-after-ms``), if any.
    :param detail: a short, secret-free description (the API's error type, or the exception's class).
    """

    kind: ErrorKind
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""

    @property
    def transient(self) -> bool:
        return self.kind.transient

    def describe(self) -> str:
        parts = [self.kind.value.replace("_", " ")]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.detail:
            parts.append(self.detail)
        if self.retry_after is not None:
            parts.append(f"retry-after {self.retry_after:g} s")
        return ", ".join(parts)


def poll_error_from_exception(exc: BaseException, *, now: float) -> PollError | None:
    """Classify what a poll raised; ``None`` when it is not an API or connection failure (a bug).

    :param exc: an ``anthropic`` exception, or one of this package's (``BatchNotFoundError``,
        ``ConnectionConfigError``) when the call went through the hook.
    :param now: the current time, epoch seconds, to read an HTTP-date ``retry-after``.
    """
    import anthropic  # here: a poll that raised has loaded the SDK already; a DAG file's parse has not

    if isinstance(exc, BatchNotFoundError):
        return PollError(ErrorKind.NOT_FOUND, status=404, detail="not_found_error")
    if isinstance(exc, ConnectionConfigError):
        return PollError(ErrorKind.AUTH, detail="connection rejected")
    if isinstance(exc, anthropic.APIConnectionError):
        timed_out = isinstance(exc, anthropic.APITimeoutError)
        detail = "timed out" if timed_out else type(exc.__cause__ or exc).__name__
        return PollError(ErrorKind.CONNECTION, detail=detail)
    if isinstance(exc, anthropic.APIStatusError):
        return _poll_error_from_status(
            exc.status_code,
            headers=exc.response.headers,
            error_type=_api_error_type(exc.body),
            now=now,
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return PollError(ErrorKind.REJECTED, status=exc.status_code, detail="unexpected response body")
    return None


def parse_batch(body: bytes) -> tuple[dict[str, Any] | None, PollError | None]:
    """Return the batch from a poll's response body, or the error when it is not a batch object.

    A gateway answering 200 with an HTML page, or anything but a JSON object, is not transient.
    """
    try:
        batch = orjson.loads(body)
    except orjson.JSONDecodeError:
        batch = None
    if not isinstance(batch, dict):
        return None, PollError(ErrorKind.REJECTED, status=200, detail="the answer is not a batch object")
    return batch, None


def _poll_error_from_status(
    status: int, *, headers: Mapping[str, str], error_type: str, now: float
) -> PollError:
    retry_after = parse_retry_after(headers, now=now)
    if status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status == _OVERLOADED_STATUS:
        kind = ErrorKind.OVERLOADED
    elif status >= 500 or status in _TRANSIENT_STATUSES:
        kind = ErrorKind.SERVER_ERROR
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif status in (401, 403):
        kind = ErrorKind.AUTH
    else:
        kind = ErrorKind.REJECTED
    return PollError(kind, status=status, retry_after=retry_after, detail=error_type)


def _api_error_type(body: object) -> str:
    """Return the API's error type (``rate_limit_error`` ...) from an error body, never its message."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("type"), str):
            return inner["type"]
    return ""
