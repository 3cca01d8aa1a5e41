"""The deadline cancel's retries (``triggers/deadline_cancel.py``): what is tried again, after how long,
how often, and the sentence for a cancel that did not work. The loops run for real, with their sleep
recorded instead of slept; the cancel against the emulator is covered by the sensor and trigger tests."""

from __future__ import annotations

import asyncio

import pytest

from airflow_claude_batch.triggers.deadline_cancel import (
    CANCEL_ATTEMPTS,
    CANCEL_MAX_PAUSE_S,
    async_cancel_retrying,
    cancel_retrying,
    why_not_cancelled,
)
from tests.core.wait.test_polling import status_error


def _run(failures: list[BaseException]) -> tuple[int, list[float], str | None]:
    """Cancel with a call failing with ``failures`` in turn; return calls made, pauses, the outcome."""
    calls, pauses = [0], []

    def cancel() -> None:
        calls[0] += 1
        if failures:
            raise failures.pop(0)

    try:
        for attempt in cancel_retrying().copy(sleep=pauses.append):
            with attempt:
                cancel()
    except Exception as exc:
        return calls[0], pauses, why_not_cancelled(exc)
    return calls[0], pauses, None


def test_a_transient_failure_is_tried_again_and_the_cancel_goes_through() -> None:
    calls, pauses, outcome = _run([status_error(529, "overloaded_error"), status_error(500, "api_error")])
    assert (calls, outcome) == (3, None)
    assert pauses == [1, 2]  # the attempt's number in seconds, with no retry-after


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    _, pauses, _ = _run([status_error(429, "rate_limit_error", {"retry-after": "3"})])
    assert pauses == [3.0]
    _, pauses, _ = _run([status_error(429, "rate_limit_error", {"retry-after": "120"})])
    assert pauses == [CANCEL_MAX_PAUSE_S]


def test_the_attempts_are_bounded_and_the_last_error_is_said() -> None:
    failures = [status_error(500, "api_error") for _ in range(CANCEL_ATTEMPTS + 2)]
    calls, pauses, outcome = _run(failures)
    assert calls == CANCEL_ATTEMPTS
    assert len(pauses) == CANCEL_ATTEMPTS - 1
    assert outcome is not None
    assert "500" in outcome
    assert "do not log me" not in outcome


@pytest.mark.parametrize(
    ("failure", "said"),
    [(status_error(404, "not_found_error"), "404"), (KeyError("processing_status"), "KeyError")],
)
def test_anything_not_transient_ends_at_once(failure: BaseException, said: str) -> None:
    calls, pauses, outcome = _run([failure])
    assert (calls, pauses) == (1, [])
    assert outcome is not None
    assert said in outcome


def test_the_async_loop_retries_the_same_way() -> None:
    failures = [status_error(503, "api_error")]
    pauses: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def cancel() -> None:
        async for attempt in async_cancel_retrying().copy(sleep=sleep):
            with attempt:
                nonlocal calls
                calls += 1
                if failures:
                    raise failures.pop(0)

    asyncio.run(cancel())
    assert (calls, pauses) == (2, [1])
