"""Decisions for waiting on a batch: poll again (and when), done, deadline passed, or give up.

The same functions drive the deferrable trigger and the sensor's poke / reschedule fallback, so both
behave alike; they take what was observed (the batch as a plain dict, or the error of a failed poll),
the clock and the deadline, and do no I/O.

Rules, in order:

- A batch whose ``processing_status`` is ``ended`` is done, even past the deadline.
- Past the deadline (wall-clock ``end_time``, epoch seconds) the wait is over: ``DEADLINE``.
- ``in_progress`` and ``canceling`` (and any status this code does not know) mean poll again after the
  poll interval with jitter, so that hundreds of shards started together do not poll in step.
- A transient error (429, 5xx, 529, a 408/409, a timeout or a connection error) means poll again after
  an exponential backoff with jitter, capped, and never sooner than a ``retry-after`` the API sent.
  Every poll counts against the organisation's batch requests-per-minute limit (shared with creates
  and result downloads), so the backoff starts at the poll interval: errors never make polling faster.
- Anything else (an unknown batch, a rejected key, a malformed request) is not transient: ``FAIL``.

Polling failures never lead to cancelling the batch: only the deadline can, and only when asked to.
Errors are classified in :mod:`.poll_errors`; the lines a person reads are in :mod:`.poll_messages`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_claude_batch.core.api.headers import parse_timestamp
from airflow_claude_batch.core.api.limits import BATCH_WINDOW_SECONDS

if TYPE_CHECKING:
    from airflow_claude_batch.core.wait.poll_errors import PollError

#: ``uniform(low, high)``: the source of jitter, injectable so that decisions are reproducible in tests.
Uniform = Callable[[float, float], float]

DEFAULT_POLL_INTERVAL_S = 60.0
DEFAULT_JITTER = 0.1
DEFAULT_MAX_ERROR_DELAY_S = 600.0
DEFAULT_DEADLINE_MARGIN_S = 3600.0

ENDED = "ended"
IN_PROGRESS = "in_progress"
CANCELING = "canceling"


class PollAction(str, enum.Enum):
    """What to do after one poll."""

    WAIT = "wait"
    DONE = "done"
    DEADLINE = "deadline"
    FAIL = "fail"


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll and how to back off.

    :param poll_interval: seconds between polls of a running batch; any positive value.
    :param jitter: the fraction (0 to <1) by which each delay is spread at random around its value.
    :param max_error_delay: the cap, in seconds, of the error backoff before jitter (never below the
        poll interval).
    """

    poll_interval: float = DEFAULT_POLL_INTERVAL_S
    jitter: float = DEFAULT_JITTER
    max_error_delay: float = DEFAULT_MAX_ERROR_DELAY_S

    def __post_init__(self) -> None:
        if not self.poll_interval > 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, not {self.poll_interval}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if not self.max_error_delay > 0:
            raise ValueError(f"max_error_delay must be positive, got {self.max_error_delay!r}")

    @property
    def error_delay_cap(self) -> float:
        return max(self.max_error_delay, self.poll_interval)


@dataclass(frozen=True)
class PollDecision:
    """The outcome of one poll.

    :param action: wait, done, deadline or fail.
    :param delay: for ``WAIT``, seconds until the next poll (already clipped to the deadline).
    :param reason: a short human-readable explanation, for logs and error messages.
    """

    action: PollAction
    delay: float = 0.0
    reason: str = ""


def jittered_interval(policy: PollPolicy, uniform: Uniform = random.uniform) -> float:
    """Return the poll interval spread by ``±jitter``."""
    spread = policy.poll_interval * policy.jitter
    return uniform(policy.poll_interval - spread, policy.poll_interval + spread)


def error_backoff(attempt: int, policy: PollPolicy, uniform: Uniform = random.uniform) -> float:
    """Return the delay after the ``attempt``-th failed poll in a row (1 for the first), retry-after aside.

    The base doubles from the poll interval up to ``policy.error_delay_cap``; jitter spreads it by
    ``±jitter`` so that shards failing together do not retry together.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts failed polls from 1, got {attempt}")
    # Past ~60 doublings any interval is beyond the cap; stop before the float grows without bound.
    base = min(policy.error_delay_cap, policy.poll_interval * 2 ** min(attempt - 1, 60))
    spread = base * policy.jitter
    return uniform(base - spread, base + spread)


def first_poll_delay(
    *, now: float, end_time: float, policy: PollPolicy, uniform: Uniform = random.uniform
) -> float:
    """Return how long a (re)started waiter sleeps before its first poll.

    Spread over one interval: the triggers of a restarted triggerer, or of shards deferred together,
    then do not all poll in the same second.
    """
    return _clip_to_deadline(uniform(0.0, policy.poll_interval), now=now, end_time=end_time)


def decide_on_batch(
    batch: Mapping[str, Any],
    *,
    now: float,
    end_time: float,
    policy: PollPolicy,
    uniform: Uniform = random.uniform,
) -> PollDecision:
    """Decide what follows a successful poll.

    :param batch: the batch object as a plain dict (``processing_status``, ``request_counts`` ...).
    :param now: the current time, epoch seconds.
    :param end_time: the wall-clock deadline, epoch seconds.
    :param policy: poll interval and jitter.
    :param uniform: the source of jitter.
    """
    status = batch.get("processing_status")
    if status == ENDED:
        return PollDecision(PollAction.DONE, reason=f"batch {batch.get('id')} ended")
    if now >= end_time:
        return PollDecision(PollAction.DEADLINE, reason=f"deadline passed while the batch was {status}")
    delay = _clip_to_deadline(jittered_interval(policy, uniform), now=now, end_time=end_time)
    return PollDecision(PollAction.WAIT, delay=delay, reason=f"batch is {status}")


#: 404s in a row tolerated for a batch this wait has not seen yet: right after its create a batch can
#: be unknown to the read path for a moment (a known report against the SDK); each look is at most
#: :data:`NOT_FOUND_DELAY_CAP_S` apart, so a wrong id still fails within seconds.
NOT_FOUND_RETRIES = 3
NOT_FOUND_DELAY_CAP_S = 5.0


def decide_on_error(
    error: PollError,
    *,
    attempt: int,
    now: float,
    end_time: float,
    policy: PollPolicy,
    uniform: Uniform = random.uniform,
    seen: bool = True,
) -> PollDecision:
    """Decide what follows a failed poll.

    :param error: the failure, classified (see :func:`poll_error_from_exception`).
    :param attempt: failed polls in a row, this one included (1 for the first).
    :param now: the current time, epoch seconds.
    :param end_time: the wall-clock deadline, epoch seconds.
    :param policy: poll interval, jitter and backoff cap.
    :param uniform: the source of jitter.
    :param seen: whether this wait has had the batch in an answer; a batch never seen that is not found
        is looked for again, briefly (:data:`NOT_FOUND_RETRIES`).
    """
    not_found = error.kind.value == "not_found"  # ``ErrorKind.NOT_FOUND`` (poll_errors imports this module)
    if not_found and not seen and attempt <= NOT_FOUND_RETRIES and now < end_time:
        delay = min(error_backoff(attempt, policy, uniform), NOT_FOUND_DELAY_CAP_S)
        reason = (
            f"{error.describe()}: a batch can be unknown for a moment right after its create; looking "
            f"again ({attempt}/{NOT_FOUND_RETRIES})"
        )
        delay = _clip_to_deadline(delay, now=now, end_time=end_time)
        return PollDecision(PollAction.WAIT, delay=delay, reason=reason)
    if not error.transient:
        return PollDecision(PollAction.FAIL, reason=error.describe())
    if now >= end_time:
        reason = f"deadline passed while polling failed ({error.describe()})"
        return PollDecision(PollAction.DEADLINE, reason=reason)
    delay = error_backoff(attempt, policy, uniform)
    if error.retry_after is not None and error.retry_after >= delay:
        # Honour the server's wish, and spread the shards that received the same one.
        delay = error.retry_after + uniform(0.0, policy.poll_interval * policy.jitter)
    delay = _clip_to_deadline(delay, now=now, end_time=end_time)
    return PollDecision(PollAction.WAIT, delay=delay, reason=error.describe())


def _clip_to_deadline(delay: float, *, now: float, end_time: float) -> float:
    """Never sleep past the deadline: the poll made at the deadline is the last one."""
    return max(0.0, min(delay, end_time - now))


# --- deadlines, and the times the API sends ----------------------------------------------------------


def default_end_time(batch: Mapping[str, Any] | None, *, margin: float, now: float) -> float:
    """Return the wait's wall-clock deadline: the batch's ``expires_at`` plus ``margin`` seconds.

    A batch ends by its expiry at the latest, so the deadline only trips when the API misbehaves, or
    when ``margin`` is negative on purpose. Without a readable ``expires_at`` (no batch seen yet), the
    latest expiry possible, ``now`` plus the 24-hour window, stands in for it.
    """
    expires_at = parse_timestamp(batch.get("expires_at")) if batch else None
    if expires_at is None:
        expires_at = now + BATCH_WINDOW_SECONDS
    return expires_at + margin
