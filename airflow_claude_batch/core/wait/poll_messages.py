"""What a person reads while a batch is waited for: progress lines, and why the wait ended.

Only ids, statuses, counts and times: never a prompt, an output or a key. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_claude_batch.core.api.headers import parse_timestamp
from airflow_claude_batch.core.run.outcomes import RESULT_TYPES, Outcome
from airflow_claude_batch.core.wait.poll_errors import ErrorKind, PollError
from airflow_claude_batch.core.wait.polling import CANCELING, ENDED, PollAction, PollDecision

PROGRESS_LOG_EVERY_S = 600.0
PROGRESS_LOG_MIN_EVERY_S = 60.0
PROGRESS_LOG_STEP = 0.05
#: The API's ``request_counts``: those still processing, then one per result type.
REQUEST_COUNT_KEYS = ("processing", *RESULT_TYPES)


def request_counts(batch: Mapping[str, Any]) -> dict[str, int]:
    """Return the batch's ``request_counts`` as five integers (missing ones as 0)."""
    counts = batch.get("request_counts") or {}
    return {key: int(counts.get(key) or 0) for key in REQUEST_COUNT_KEYS}


@dataclass
class ProgressLog:
    """Which polls are worth a progress line: the first, each change of status, the last, one each time
    the share of requests done has moved by ``step`` (at most one a ``min_every`` seconds), and one
    every ``every`` seconds while nothing moves. A day-long batch polled every minute logs at most
    about 20 lines of progress and 150 of waiting, not 1,440. Failed polls are always worth a
    warning; they do not pass through here.

    :param every: seconds between two progress lines while nothing changes.
    :param min_every: the least number of seconds between two lines for progress alone.
    :param step: the share of requests done (0 to 1) that is worth a line of its own.
    """

    every: float = PROGRESS_LOG_EVERY_S
    min_every: float = PROGRESS_LOG_MIN_EVERY_S
    step: float = PROGRESS_LOG_STEP
    _last_time: float | None = None
    _last_status: str | None = None
    _last_done: float = 0.0

    def due(self, status: str | None, *, now: float, final: bool = False, done: float = 0.0) -> bool:
        """Return whether this poll gets a line, and remember it if so.

        :param done: the share of the batch's requests no longer processing (0 to 1).
        """
        due = (
            final
            or self._last_time is None
            or status != self._last_status
            or now - self._last_time >= self.every
            or (done - self._last_done >= self.step and now - self._last_time >= self.min_every)
        )
        if due:
            self._last_time, self._last_status, self._last_done = now, status, done
        return due


def canceled_message(batch_id: str, counts: Mapping[str, int]) -> str:
    """The warning for a batch canceled before it ended: how many requests were canceled or expired."""
    return (
        f"Batch {batch_id} was canceled before it ended: {counts[Outcome.CANCELED]} requests canceled, "
        f"{counts[Outcome.EXPIRED]} expired."
    )


def done_fraction(batch: Mapping[str, Any]) -> float:
    """Return the share of the batch's requests that are no longer processing (0 when it has none)."""
    counts = request_counts(batch)
    total = sum(counts.values())
    return (total - counts["processing"]) / total if total else 0.0


def describe_progress(batch: Mapping[str, Any], *, now: float, end_time: float) -> str:
    """Return one line a person can follow: status, how much is done and how it went, time running,
    time left. The counts are the API's, so a batch of this package counts its marker request too
    (the submit and the wait say so once).

    Only ids, statuses, counts and times: never a prompt, an output or a key.
    """
    counts = request_counts(batch)
    total = sum(counts.values())
    done = total - counts["processing"]
    outcomes = ", ".join(f"{counts[key]:,} {key}" for key in REQUEST_COUNT_KEYS)
    parts = [
        f"batch {batch.get('id')} is {batch.get('processing_status')}",
        f"{done:,} of {total:,} requests done ({done_fraction(batch):.0%}): {outcomes}",
    ]
    created_at = parse_timestamp(batch.get("created_at"))
    if created_at is not None:
        parts.append(f"running for {format_duration(now - created_at)}")
    expires_at = parse_timestamp(batch.get("expires_at"))
    if expires_at is not None and batch.get("processing_status") != ENDED:
        parts.append(f"{format_duration(expires_at - now)} left before it expires")
        parts.append(f"deadline in {format_duration(end_time - now)}")
    return "; ".join(parts)


def marker_note(batch_id: str, *, records: int) -> str:
    """Return the line that explains, once per wait, the one request more than the shard's records.

    :param batch_id: the batch.
    :param records: the shard's request count, the marker left out.
    """
    return (
        f"Batch {batch_id} holds {records + 1:,} requests: the shard's {records:,} and one marker request "
        "(max_tokens 1) that proves the batch is this shard's. The counts below include it; the outcome "
        "files and the manifest do not."
    )


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


def progress_line(
    batch: Mapping[str, Any], decision: PollDecision, *, now: float, end_time: float, progress: ProgressLog
) -> str | None:
    """Return the progress line a successful poll is worth, or ``None`` (see :class:`ProgressLog`).

    :param batch: the batch as polled.
    :param decision: what follows the poll.
    :param now: the current time, epoch seconds.
    :param end_time: the wait's deadline, epoch seconds.
    :param progress: the waiter's throttle, updated when a line is due.
    """
    final = decision.action is not PollAction.WAIT
    if not progress.due(batch.get("processing_status"), now=now, final=final, done=done_fraction(batch)):
        return None
    line = describe_progress(batch, now=now, end_time=end_time)
    if decision.action is PollAction.WAIT:
        return f"{line}; next poll in {format_duration(decision.delay)}."
    return f"{line}."
