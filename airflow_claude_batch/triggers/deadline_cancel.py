"""The cancel at a missed deadline, retried by tenacity: the trigger's and the worker-mode sensor's.

A cancel is asked for only when a wait's deadline passed with ``cancel_on_timeout=True``. Cancelling
twice is harmless, so a transient failure (429, 5xx, no answer) is tried again, at most
:data:`CANCEL_ATTEMPTS` times in all, after the server's ``retry-after`` or the attempt's number in
seconds, never more than :data:`CANCEL_MAX_PAUSE_S`: the task is ending and should not hang on it.
Anything else ends the loop at once. What did not work comes back as a sentence, never raised: the
deadline's event says it and the batch is left as it is.
"""

from __future__ import annotations

import time

import tenacity

from airflow_claude_batch.core.wait import poll_error_from_exception

CANCEL_REQUEST_TIMEOUT_S = 8.0  # three attempts stay well under a minute
CANCEL_ATTEMPTS = 3
CANCEL_MAX_PAUSE_S = 5.0


def _transient(exc: BaseException) -> bool:
    error = poll_error_from_exception(exc, now=time.time())
    return error is not None and error.transient


def _pause(state: tenacity.RetryCallState) -> float:
    failed = state.outcome.exception() if state.outcome is not None else None
    error = poll_error_from_exception(failed, now=time.time()) if failed is not None else None
    asked = error.retry_after if error is not None else None
    return min(asked or state.attempt_number, CANCEL_MAX_PAUSE_S)


_OPTIONS = {
    "stop": tenacity.stop_after_attempt(CANCEL_ATTEMPTS),
    "retry": tenacity.retry_if_exception(_transient),
    "wait": _pause,
    "reraise": True,
}


def cancel_retrying() -> tenacity.Retrying:
    """A retry loop for the worker's blocking cancel (``for attempt in ...: with attempt: ...``)."""
    return tenacity.Retrying(**_OPTIONS)


def async_cancel_retrying() -> tenacity.AsyncRetrying:
    """The same loop for the trigger's cancel on the event loop (``async for``)."""
    return tenacity.AsyncRetrying(**_OPTIONS)


def why_not_cancelled(exc: BaseException) -> str:
    """The sentence for a cancel that did not work: the API's error, else the exception's type."""
    error = poll_error_from_exception(exc, now=time.time())
    return error.describe() if error is not None else type(exc).__name__
