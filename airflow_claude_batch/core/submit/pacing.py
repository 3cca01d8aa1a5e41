"""Pacing creates under the API's capacity: a create refused for now waits, then is sent again.

The API refuses a create it cannot take now with 429 ``rate_limit_error`` (the organisation's queue of
batch requests is full, or its requests per minute on the batch endpoints are used up) or 529
``overloaded_error``. Either answer means no batch was made, and capacity comes back by itself: batches
end and leave the queue, the minute passes. So such a refusal does not fail the task. The shard records
the refused attempt in its state (``failed`` with ``retry_at``, its marker kept), waits until the
answer's ``retry-after`` (or a jittered, growing backoff when it gives none) and, before sending again,
proves with the recovery lookup that no batch holds the refused attempt's marker.

Shards of a round are sent in order: a shard does not create while a lower shard of the same round of
the same run folder waits for capacity; it waits behind it, so the earliest shards get the capacity
that frees and finish first. A lower shard that has not tried yet blocks nobody, and one whose next
try is long overdue (its task stopped waiting) blocks nobody either: no shard waits forever for another.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.state import FAILED, SubmitState, format_utc, parse_utc, read_state

#: HTTP statuses with which the API refuses a create for now: no batch was made, capacity comes back.
PACED_STATUSES = frozenset({429, 529})
#: How long a submit task waits for capacity, from its first wait, before it fails.
DEFAULT_PACING_TIMEOUT = timedelta(hours=24)
#: Backoff when a refusal gives no ``retry-after``: doubles with each refusal, up to the cap, jittered.
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(minutes=10)
#: The longest ``retry-after`` obeyed as given; a longer one is cut to this.
RETRY_AFTER_CAP = timedelta(hours=1)
#: A lower shard whose next try is overdue by more than this has stopped waiting: it blocks nobody.
STALE_AFTER = timedelta(minutes=5)
#: How long after a lower shard's next try a shard waiting behind it looks again (the lower goes first).
BEHIND_MARGIN = timedelta(seconds=10)
# The API's message is kept in the state and the log, cut to this length.
_MESSAGE_CHARS = 300


class CreateThrottled(Exception):
    """The API refused the create for now (429, 529): it made no batch; send it again later.

    :param error: the answer, e.g. ``HTTP 429 rate_limit_error: <the API's message>`` (no request content).
    :param retry_after: seconds the answer asked to wait (its ``retry-after``), ``None`` if it gave none.
    """

    def __init__(self, error: str, retry_after: float | None) -> None:
        super().__init__(error)
        self.error = error[:_MESSAGE_CHARS]
        self.retry_after = retry_after


@dataclass(frozen=True)
class Ahead:
    """A lower shard of the same round that waits for capacity.

    :param index: its shard number.
    :param retry_at: when it tries again.
    :param failure: what it was refused with.
    """

    index: int
    retry_at: datetime
    failure: str | None


def next_try(now: datetime, retry_after: float | None, refusals: int, rng: Callable[[], float]) -> datetime:
    """Return when a create refused for now may be sent again.

    :param now: the time of the refusal.
    :param retry_after: the answer's ``retry-after`` in seconds, or ``None``.
    :param refusals: refusals of this shard so far, this one included.
    :param rng: a uniform random number in [0, 1), for the jitter.
    """
    if retry_after is not None:
        return now + min(timedelta(seconds=max(retry_after, 0.0)), RETRY_AFTER_CAP)
    backoff = min(BACKOFF_BASE * 2 ** min(max(refusals - 1, 0), 16), BACKOFF_CAP)
    return now + backoff * (0.75 + 0.25 * rng())


def refused_for_now(
    intent: SubmitState, refusal: CreateThrottled, now: datetime, rng: Callable[[], float] = random.random
) -> SubmitState:
    """Return the intent closed without a batch, with the time of its next try.

    The answer came, so nothing more can land: ``settle_at`` is now. The attempt's marker stays in the
    state until the lookup before the next create has shown that no batch holds it.
    """
    refusals = intent.refusals + 1
    return dataclasses.replace(
        intent,
        status=FAILED,
        failure=refusal.error,
        settle_at=format_utc(now),
        retry_at=format_utc(next_try(now, refusal.retry_after, refusals, rng)),
        refusals=refusals,
    )


def waits_for_capacity(state: SubmitState | None, now: datetime) -> bool:
    """Return whether ``state`` is a shard waiting for capacity whose task still waits."""
    if state is None or state.status != FAILED or state.retry_at is None:
        return False
    return now < parse_utc(state.retry_at) + STALE_AFTER


def refusal_reason(state: SubmitState) -> str:
    """Say what a shard refused for now waits for, for the task log."""
    return (
        f"the API has no capacity for it now ({state.failure}; refusal {state.refusals}); the create made "
        "no batch"
    )


def behind_reason(ahead: Ahead, round_index: int) -> str:
    """Say which lower shard a shard waits behind, for the task log."""
    return (
        f"shards are sent in order: shard {ahead.index} of round {round_index} waits for capacity until "
        f"{format_utc(ahead.retry_at)} ({ahead.failure}) and goes first"
    )


def timeout_message(shard_uri: str, reason: str, timeout: timedelta) -> str:
    """The failure of a shard that waited for capacity past its deadline."""
    return (
        f"shard {shard_uri} waited {timeout} for the API's capacity and gives up: {reason}. No batch was "
        "made for this attempt. Check the organisation's batch queue and rate limits (other runs or "
        "workspaces may be using them), raise pacing_timeout, or lower max_requests_per_shard so that a "
        "shard fits the queue; then clear this task: it continues where it stopped and never creates twice"
    )


class ShardLine:
    """The shards of one round of a run folder, in index order: who waits for capacity before a shard.

    :param folder: the run folder.
    :param round_index: the round.
    :param shard_index: the shard whose turn is asked about.
    """

    def __init__(self, folder: RunFolder, round_index: int, shard_index: int) -> None:
        self.folder = folder
        self.round_index = round_index
        self.shard_index = shard_index

    def ahead(self, now: datetime) -> Ahead | None:
        """Return the lowest shard before this one that waits for capacity, ``None`` when none does."""
        for index in range(self.shard_index):
            state = read_state(self.folder.shard_state(self.round_index, index))
            if state is not None and state.retry_at is not None and waits_for_capacity(state, now):
                return Ahead(index, parse_utc(state.retry_at), state.failure)
        return None
