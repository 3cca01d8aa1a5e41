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
"""

from __future__ import annotations

import email.utils
import enum
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anthropic
import orjson

from airflow_claude_batch.batch.limits import BATCH_WINDOW_SECONDS
from airflow_claude_batch.exceptions import BatchNotFoundError, ConnectionConfigError

#: ``uniform(low, high)``: the source of jitter, injectable so that decisions are reproducible in tests.
Uniform = Callable[[float, float], float]

DEFAULT_POLL_INTERVAL_S = 60.0
DEFAULT_JITTER = 0.1
DEFAULT_MAX_ERROR_DELAY_S = 600.0
DEFAULT_DEADLINE_MARGIN_S = 3600.0
PROGRESS_LOG_EVERY_S = 600.0

ENDED = "ended"
IN_PROGRESS = "in_progress"
CANCELING = "canceling"
REQUEST_COUNT_KEYS = ("processing", "succeeded", "errored", "canceled", "expired")

# HTTP statuses a later poll may not see again; 408/409 are retried by the SDK itself for the same reason.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_OVERLOADED_STATUS = 529


class PollAction(str, enum.Enum):
    """What to do after one poll."""

    WAIT = "wait"
    DONE = "done"
    DEADLINE = "deadline"
    FAIL = "fail"


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


def decide_on_error(
    error: PollError,
    *,
    attempt: int,
    now: float,
    end_time: float,
    policy: PollPolicy,
    uniform: Uniform = random.uniform,
) -> PollDecision:
    """Decide what follows a failed poll.

    :param error: the failure, classified (see :func:`poll_error_from_exception`).
    :param attempt: failed polls in a row, this one included (1 for the first).
    :param now: the current time, epoch seconds.
    :param end_time: the wall-clock deadline, epoch seconds.
    :param policy: poll interval, jitter and backoff cap.
    :param uniform: the source of jitter.
    """
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


# --- deadlines -------------------------------------------------------------------------------------


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


def parse_timestamp(value: Any) -> float | None:
    """Return epoch seconds from an RFC 3339 string (``...Z`` or with an offset), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python 3.10's fromisoformat takes at most 6 fractional digits; the API may send more.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float) -> float | None:
    """Return the seconds to wait that the response asked for, or ``None``.

    Reads ``retry-after-ms`` first (milliseconds), then ``retry-after`` (seconds or an HTTP date).
    """
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _as_float(lowered.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000.0
    raw = lowered.get("retry-after")
    seconds = _as_float(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    if raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(when.timestamp() - now, 0.0)
    return None


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# --- errors ----------------------------------------------------------------------------------------


def poll_error_from_exception(exc: BaseException, *, now: float) -> PollError | None:
    """Classify what a poll raised; ``None`` when it is not an API or connection failure (a bug).

    :param exc: an ``anthropic`` exception, or one of this package's (``BatchNotFoundError``,
        ``ConnectionConfigError``) when the call went through the hook.
    :param now: the current time, epoch seconds, to read an HTTP-date ``retry-after``.
    """
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


# --- reporting -------------------------------------------------------------------------------------


def request_counts(batch: Mapping[str, Any]) -> dict[str, int]:
    """Return the batch's ``request_counts`` as five integers (missing ones as 0)."""
    counts = batch.get("request_counts") or {}
    return {key: int(counts.get(key) or 0) for key in REQUEST_COUNT_KEYS}


@dataclass
class ProgressLog:
    """Which polls are worth a progress line: the first, each change of status, the last, and one
    every ``every`` seconds in between, so that a day-long batch polled every minute logs about 150
    lines, not 1,440. Failed polls are always worth a warning; they do not pass through here.

    :param every: seconds between two progress lines while nothing changes.
    """

    every: float = PROGRESS_LOG_EVERY_S
    _last_time: float | None = None
    _last_status: str | None = None

    def due(self, status: str | None, *, now: float, final: bool = False) -> bool:
        """Return whether this poll gets a line, and remember it if so."""
        due = (
            final
            or self._last_time is None
            or status != self._last_status
            or now - self._last_time >= self.every
        )
        if due:
            self._last_time, self._last_status = now, status
        return due


def describe_progress(batch: Mapping[str, Any], *, now: float, end_time: float) -> str:
    """Return one line a person can follow: status, requests, time running, time left.

    Only ids, statuses, counts and times: never a prompt, an output or a key.
    """
    counts = request_counts(batch)
    total = sum(counts.values())
    parts = [f"batch {batch.get('id')} is {batch.get('processing_status')}", f"{total:,} requests"]
    if batch.get("processing_status") == ENDED:
        parts.append(", ".join(f"{counts[key]:,} {key}" for key in REQUEST_COUNT_KEYS if key != "processing"))
    created_at = parse_timestamp(batch.get("created_at"))
    if created_at is not None:
        parts.append(f"running for {format_duration(now - created_at)}")
    expires_at = parse_timestamp(batch.get("expires_at"))
    if expires_at is not None and batch.get("processing_status") != ENDED:
        parts.append(f"{format_duration(expires_at - now)} left before it expires")
        parts.append(f"deadline in {format_duration(end_time - now)}")
    return "; ".join(parts)


def deadline_message(
    batch_id: str,
    *,
    end_time: float,
    last_status: str | None,
    cancel_on_timeout: bool,
    cancel_error: str | None = None,
) -> str:
    """Return the text of the error raised when the deadline passes: which batch, and what was done.

    :param batch_id: the batch.
    :param end_time: the deadline that passed, epoch seconds.
    :param last_status: the status last seen (``None`` when no poll succeeded).
    :param cancel_on_timeout: whether a cancel was asked for.
    :param cancel_error: why the cancel failed, when it did.
    """
    deadline = datetime.fromtimestamp(end_time, tz=timezone.utc).isoformat(timespec="seconds")
    seen = f"last seen {last_status}" if last_status else "its status could not be read"
    head = f"Batch {batch_id} did not end before the wait's deadline {deadline} ({seen})."
    if not cancel_on_timeout:
        action = (
            "It was left running (cancel_on_timeout=False): it ends by itself at its expiry; clear this "
            "task to wait again, or cancel the batch if its results are no longer wanted."
        )
    elif cancel_error:
        action = (
            f"Cancelling it failed ({cancel_error}): the batch may still be running; cancel it by hand "
            "if its results are no longer wanted."
        )
    elif last_status == CANCELING:
        action = "It was already canceling; requests already processed are billed and kept in its results."
    else:
        action = (
            "It was canceled (cancel_on_timeout=True): requests already processed are billed and kept in "
            "its results, the rest end as canceled and can be requeued."
        )
    return f"{head} {action}"


def failure_message(batch_id: str, *, conn_id: str, error: PollError) -> str:
    """Return the text of the error raised when polling cannot succeed: which batch, which connection,
    and what to do. The batch is never cancelled for it.

    :param batch_id: the batch polled.
    :param conn_id: the connection polled through.
    :param error: the permanent failure.
    """
    if error.kind is ErrorKind.NOT_FOUND:
        return (
            f"Batch {batch_id} was not found through connection {conn_id!r} ({error.describe()}): check "
            "that the id is right, that the connection's key belongs to the workspace that created it, "
            "and that it was not deleted."
        )
    if error.kind is ErrorKind.CONNECTION_CONFIG:
        return (
            f"Connection {conn_id!r} could not be used to poll batch {batch_id} ({error.detail}): "
            "nothing reached the API. Define or fix the connection where the waiting process reads "
            "connections (the metadata database, an AIRFLOW_CONN_ variable or the secrets backend), then "
            "clear this task to wait again. The batch was not canceled."
        )
    if error.kind is ErrorKind.AUTH:
        return (
            f"Connection {conn_id!r} was rejected while polling batch {batch_id} ({error.describe()}): "
            "fix the connection's API key or base URL, then clear this task to wait again. The batch "
            "was not canceled."
        )
    return (
        f"Polling batch {batch_id} through connection {conn_id!r} failed ({error.describe()}). The "
        "batch was not canceled; clear this task to wait again."
    )


def format_duration(seconds: float) -> str:
    """Return ``1h02m``, ``4m05s``, ``12s`` or ``0.2s`` (``-`` in front when negative)."""
    sign = "-" if seconds < 0 else ""
    if abs(seconds) < 10:
        return f"{sign}{abs(seconds):.1f}s"
    total = int(abs(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"
