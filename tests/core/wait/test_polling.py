"""Poll decisions, without I/O: every branch of done / wait / deadline / fail, backoff and jitter."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import anthropic
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_claude_batch.core.wait.poll_errors import (
    ErrorKind,
    PollError,
)
from airflow_claude_batch.core.wait.polling import (
    PollAction,
    PollPolicy,
    decide_on_batch,
    decide_on_error,
    default_end_time,
    error_backoff,
    first_poll_delay,
    jittered_interval,
)

NOW = 1_800_000_000.0
LATER = NOW + 10_000.0
POLICY = PollPolicy(poll_interval=60.0, jitter=0.1, max_error_delay=600.0)


def low(a: float, b: float) -> float:
    return a


def high(a: float, b: float) -> float:
    return b


def batch(status: str, **counts: int) -> dict:
    return {
        "id": "msgbatch_test",
        "processing_status": status,
        "request_counts": {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        | counts,
        "created_at": "2027-01-15T08:00:00Z",
        "expires_at": "2027-01-16T08:00:00Z",
    }


# --- after a successful poll ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "now", "action"),
    [
        ("ended", NOW, PollAction.DONE),
        ("ended", LATER + 1, PollAction.DONE),  # an ended batch wins over a passed deadline
        ("in_progress", NOW, PollAction.WAIT),
        ("canceling", NOW, PollAction.WAIT),
        ("some_future_status", NOW, PollAction.WAIT),
        ("in_progress", LATER, PollAction.DEADLINE),
        ("in_progress", LATER + 1, PollAction.DEADLINE),
        ("canceling", LATER + 1, PollAction.DEADLINE),
    ],
)
def test_decide_on_batch(status: str, now: float, action: PollAction) -> None:
    decision = decide_on_batch(batch(status), now=now, end_time=LATER, policy=POLICY, uniform=low)
    assert decision.action is action
    assert decision.delay == (54.0 if action is PollAction.WAIT else 0.0)


@pytest.mark.parametrize(("uniform", "expected"), [(low, 54.0), (high, 66.0)])
def test_waiting_delay_is_the_interval_spread_by_jitter(uniform, expected: float) -> None:
    decision = decide_on_batch(batch("in_progress"), now=NOW, end_time=LATER, policy=POLICY, uniform=uniform)
    assert decision.delay == pytest.approx(expected)


def test_waiting_never_sleeps_past_the_deadline() -> None:
    decision = decide_on_batch(batch("in_progress"), now=NOW, end_time=NOW + 5, policy=POLICY, uniform=high)
    assert decision.action is PollAction.WAIT
    assert decision.delay == pytest.approx(5.0)


# --- after a failed poll ----------------------------------------------------------------------------

TRANSIENT = [
    PollError(ErrorKind.RATE_LIMITED, status=429),
    PollError(ErrorKind.SERVER_ERROR, status=500),
    PollError(ErrorKind.OVERLOADED, status=529),
    PollError(ErrorKind.CONNECTION, detail="ConnectError"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: e.kind.value)
@pytest.mark.parametrize(("attempt", "base"), [(1, 60.0), (2, 120.0), (3, 240.0), (4, 480.0), (5, 600.0)])
def test_transient_errors_back_off_exponentially_from_the_interval_to_the_cap(
    error: PollError, attempt: int, base: float
) -> None:
    low_decision = decide_on_error(
        error, attempt=attempt, now=NOW, end_time=LATER, policy=POLICY, uniform=low
    )
    high_decision = decide_on_error(
        error, attempt=attempt, now=NOW, end_time=LATER, policy=POLICY, uniform=high
    )
    assert low_decision.action is PollAction.WAIT
    assert low_decision.delay == pytest.approx(base * 0.9)
    assert high_decision.delay == pytest.approx(base * 1.1)


def test_the_backoff_stays_at_the_cap_however_many_failures() -> None:
    assert error_backoff(10_000, POLICY, high) == pytest.approx(660.0)


def test_the_cap_is_never_below_the_poll_interval() -> None:
    policy = PollPolicy(poll_interval=900.0, jitter=0.0, max_error_delay=600.0)
    assert error_backoff(1, policy, low) == 900.0
    assert error_backoff(3, policy, low) == 900.0


@pytest.mark.parametrize(
    ("retry_after", "expected_low", "expected_high"),
    [
        (None, 54.0, 66.0),  # no retry-after: the backoff alone
        (30.0, 54.0, 66.0),  # a retry-after shorter than the backoff changes nothing
        (300.0, 300.0, 306.0),  # a longer one is honoured, spread by up to jitter x interval
    ],
)
def test_429_honours_retry_after(
    retry_after: float | None, expected_low: float, expected_high: float
) -> None:
    error = PollError(ErrorKind.RATE_LIMITED, status=429, retry_after=retry_after)
    for uniform, expected in ((low, expected_low), (high, expected_high)):
        decision = decide_on_error(error, attempt=1, now=NOW, end_time=LATER, policy=POLICY, uniform=uniform)
        assert decision.action is PollAction.WAIT
        assert decision.delay == pytest.approx(expected)
        assert decision.delay >= (retry_after or 0)


def test_a_retry_after_beyond_the_deadline_is_clipped_to_it() -> None:
    error = PollError(ErrorKind.RATE_LIMITED, status=429, retry_after=50_000.0)
    decision = decide_on_error(error, attempt=1, now=NOW, end_time=NOW + 100, policy=POLICY, uniform=low)
    assert decision.action is PollAction.WAIT
    assert decision.delay == pytest.approx(100.0)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: e.kind.value)
def test_transient_errors_past_the_deadline_end_the_wait(error: PollError) -> None:
    decision = decide_on_error(error, attempt=1, now=LATER, end_time=LATER, policy=POLICY)
    assert decision.action is PollAction.DEADLINE


@pytest.mark.parametrize(
    "error",
    [
        PollError(ErrorKind.NOT_FOUND, status=404),
        PollError(ErrorKind.AUTH, status=401),
        PollError(ErrorKind.AUTH, status=403),
        PollError(ErrorKind.REJECTED, status=400),
    ],
    ids=lambda e: f"{e.kind.value}-{e.status}",
)
def test_permanent_errors_fail_at_once_even_on_the_first_attempt(error: PollError) -> None:
    decision = decide_on_error(error, attempt=1, now=NOW, end_time=LATER, policy=POLICY)
    assert decision.action is PollAction.FAIL
    assert str(error.status) in decision.reason


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        error_backoff(0, POLICY)


# --- jitter bounds ----------------------------------------------------------------------------------


@given(
    interval=st.floats(min_value=0.001, max_value=86_400),
    jitter=st.floats(min_value=0.0, max_value=0.99),
    attempt=st.integers(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_delay_stays_within_its_jitter_bounds(
    interval: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = PollPolicy(poll_interval=interval, jitter=jitter)
    uniform = random.Random(seed).uniform
    assert interval * (1 - jitter) * 0.999999 <= jittered_interval(policy, uniform) <= interval * (1 + jitter)
    base = min(policy.error_delay_cap, interval * 2 ** (attempt - 1))
    backoff = error_backoff(attempt, policy, uniform)
    assert base * (1 - jitter) * 0.999999 <= backoff <= base * (1 + jitter) * 1.000001
    assert 0 <= first_poll_delay(now=NOW, end_time=LATER, policy=policy, uniform=uniform) <= interval


def test_jitter_spreads_many_shards_over_the_interval() -> None:
    uniform = random.Random(7).uniform
    delays = [jittered_interval(POLICY, uniform) for _ in range(500)]
    assert min(delays) < 56
    assert max(delays) > 64
    assert all(54 <= delay <= 66 for delay in delays)


def test_the_first_poll_of_a_restarted_waiter_is_spread_and_clipped() -> None:
    assert first_poll_delay(now=NOW, end_time=LATER, policy=POLICY, uniform=high) == 60.0
    assert first_poll_delay(now=NOW, end_time=NOW + 3, policy=POLICY, uniform=high) == 3.0
    assert first_poll_delay(now=LATER + 5, end_time=LATER, policy=POLICY, uniform=high) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"poll_interval": 0}, {"poll_interval": -1}, {"jitter": 1.0}, {"jitter": -0.1}, {"max_error_delay": 0}],
)
def test_policy_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PollPolicy(**kwargs)


def test_tiny_intervals_are_accepted() -> None:
    assert PollPolicy(poll_interval=0.01).poll_interval == 0.01


# --- classifying what a poll raised ------------------------------------------------------------------

REQUEST = httpx.Request("GET", "http://127.0.0.1/v1/messages/batches/msgbatch_x")


def status_error(status: int, error_type: str, headers: dict | None = None) -> anthropic.APIStatusError:
    body = {"type": "error", "error": {"type": error_type, "message": "do not log me"}}
    response = httpx.Response(status, headers=headers or {}, json=body, request=REQUEST)
    client = anthropic.Anthropic(api_key="sk-ant-test-not-a-key", base_url="http://127.0.0.1")
    return client._make_status_error("message", body=body, response=response)


# --- deadlines and reporting ------------------------------------------------------------------------


def test_default_deadline_is_expiry_plus_margin() -> None:
    expires = datetime(2027, 1, 16, 8, tzinfo=timezone.utc).timestamp()
    assert default_end_time(batch("in_progress"), margin=3600, now=NOW) == expires + 3600
    assert default_end_time(batch("in_progress"), margin=-7200, now=NOW) == expires - 7200


def test_without_a_batch_the_latest_possible_expiry_stands_in() -> None:
    assert default_end_time(None, margin=3600, now=NOW) == NOW + 24 * 3600 + 3600
    assert default_end_time({"expires_at": None}, margin=0, now=NOW) == NOW + 24 * 3600


def test_a_batch_never_seen_that_is_not_found_is_looked_for_again_briefly() -> None:
    # Right after its create a batch can be unknown to the read path for a moment: 3 quick looks,
    # at most 5 s apart, then the 404 is final; once the wait has seen the batch, a 404 is final at once.
    error = PollError(ErrorKind.NOT_FOUND, status=404, detail="not_found_error")
    for attempt in (1, 2, 3):
        decision = decide_on_error(
            error, attempt=attempt, now=NOW, end_time=LATER, policy=POLICY, uniform=high, seen=False
        )
        assert decision.action is PollAction.WAIT
        assert decision.delay <= 5.0
        assert "right after its create" in decision.reason
    assert decide_on_error(error, attempt=4, now=NOW, end_time=LATER, policy=POLICY, seen=False).action is (
        PollAction.FAIL
    )
    assert decide_on_error(error, attempt=1, now=NOW, end_time=LATER, policy=POLICY).action is PollAction.FAIL
