"""Poll errors: what an API failure or a reply that is not a batch means for the wait."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.core.wait.poll_errors import (
    ErrorKind,
    PollError,
    parse_batch,
    poll_error_from_exception,
)
from airflow_claude_batch.exceptions import BatchNotFoundError, ConnectionConfigError
from tests.core.wait.test_polling import NOW, REQUEST, status_error


@pytest.mark.parametrize(
    ("exc", "kind", "status", "retry_after"),
    [
        (status_error(429, "rate_limit_error", {"retry-after": "7"}), ErrorKind.RATE_LIMITED, 429, 7.0),
        (status_error(429, "rate_limit_error"), ErrorKind.RATE_LIMITED, 429, None),
        (status_error(429, "rate_limit_error", {"retry-after-ms": "1500"}), ErrorKind.RATE_LIMITED, 429, 1.5),
        (status_error(500, "api_error"), ErrorKind.SERVER_ERROR, 500, None),
        (status_error(503, "api_error"), ErrorKind.SERVER_ERROR, 503, None),
        (status_error(408, "timeout_error"), ErrorKind.SERVER_ERROR, 408, None),
        (status_error(529, "overloaded_error", {"retry-after": "3"}), ErrorKind.OVERLOADED, 529, 3.0),
        (status_error(404, "not_found_error"), ErrorKind.NOT_FOUND, 404, None),
        (status_error(401, "authentication_error"), ErrorKind.AUTH, 401, None),
        (status_error(403, "permission_error"), ErrorKind.AUTH, 403, None),
        (status_error(400, "invalid_request_error"), ErrorKind.REJECTED, 400, None),
    ],
)
def test_api_errors_are_classified(exc, kind: ErrorKind, status: int, retry_after: float | None) -> None:
    error = poll_error_from_exception(exc, now=NOW)
    assert error == PollError(kind, status=status, retry_after=retry_after, detail=error.detail)
    assert error.detail == exc.body["error"]["type"]
    assert "do not log me" not in error.describe()


def test_connection_errors_and_timeouts_are_transient() -> None:
    connection = poll_error_from_exception(anthropic.APIConnectionError(request=REQUEST), now=NOW)
    timeout = poll_error_from_exception(anthropic.APITimeoutError(request=REQUEST), now=NOW)
    assert connection.kind is ErrorKind.CONNECTION
    assert connection.transient
    assert timeout.kind is ErrorKind.CONNECTION
    assert timeout.detail == "timed out"


def test_package_errors_from_the_hook_are_permanent() -> None:
    assert poll_error_from_exception(BatchNotFoundError("x"), now=NOW).kind is ErrorKind.NOT_FOUND
    assert poll_error_from_exception(ConnectionConfigError("x"), now=NOW).kind is ErrorKind.AUTH


def test_bugs_are_not_mistaken_for_api_errors() -> None:
    assert poll_error_from_exception(KeyError("processing_status"), now=NOW) is None


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"id": "msgbatch_x", "processing_status": "in_progress"}', True),
        (b"<html>Bad gateway</html>", False),
        (b'["not", "a", "batch"]', False),
        (b"", False),
    ],
)
def test_parse_batch_refuses_what_is_not_a_batch_object(body: bytes, ok: bool) -> None:
    batch, error = parse_batch(body)
    if ok:
        assert batch == {"id": "msgbatch_x", "processing_status": "in_progress"}
        assert error is None
    else:
        assert batch is None
        assert error.kind is ErrorKind.REJECTED
        assert not error.transient
