"""Finding the batch of a create whose answer was lost, and adopting it only with proof.

A create's answer can be lost (a timeout, a dropped connection, a worker killed right after the call)
while the API made the batch all the same. The API has no idempotency key and no metadata, so the
batch is looked for among the workspace's batches listed since the intent, of the shard's size (its
requests and its marker). A candidate is

- **ours** when the claims index says this shard owns it (a crash between the claim and the state), or
  when it has ended and its results hold one of the shard's markers: adopted;
- **another shard's** when another shard claimed it, or when it ended without our marker: set aside
  (remembered in the state as ``not_ours``, so its results are read once);
- **undecided** while it runs without a claim: the submit waits for it to end and looks again. It never
  creates while a candidate may still be its own.

The candidates are the batches listed above the ids the intent recorded (the newest batches listed
just before the create): no clock is compared, so an API clock hours away from the worker's changes
nothing. A candidate's results count as read only when their lines number its ``request_counts``; a
short read, or results not found for an ended batch (they can lag its status), is read again with
backoff within a bound and is never taken as proof that the batch is another's.

With no candidate left, the create made no batch once it can no longer land (``settle_at``: its answer
came, or the client's timeout and a margin passed); before that the submit waits, because an
unanswered create may still be processed by the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_claude_batch.core.run.claims import Claim, ClaimsIndex
from airflow_claude_batch.core.submit.state import SubmitState, format_utc, parse_utc
from airflow_claude_batch.exceptions import (
    ResultsStreamInterrupted,
    ResultsUnavailableError,
    SubmitRecoveryError,
)

log = logging.getLogger(__name__)
Batch = Any  # a batch object as a plain dict
#: Page size when listing batches to recover a lost create.
RECOVERY_PAGE_SIZE = 100
#: Seconds between reads of a candidate's results that came back short or not found (about 1.5 minutes).
DEFAULT_RESULTS_READ_DELAYS = (2.0, 4.0, 8.0, 15.0, 30.0, 30.0)


@dataclass(frozen=True)
class ResultsReads:
    """How a candidate's results are read again when a read is short or finds nothing.

    :param delays: seconds to wait before each read after the first; when used up, the submit fails.
    :param sleep: waits that many seconds (injected so tests do not wait).
    """

    delays: tuple[float, ...] = DEFAULT_RESULTS_READ_DELAYS
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Adopt:
    """The candidate is proven to be the shard's batch."""

    batch: Batch
    marker_id: str | None


@dataclass(frozen=True)
class Wait:
    """Nothing can be decided yet: look again at ``until``.

    :param until: when to look again (UTC).
    :param reason: what the submit is waiting for, for the task log.
    :param nothing_listed: no candidate is listed; the wait is only for the create to settle.
    """

    until: datetime
    reason: str
    nothing_listed: bool = False


@dataclass(frozen=True)
class CreateAgain:
    """The lost create made no batch and can no longer make one: the shard may be sent again."""


Decision = Adopt | Wait | CreateAgain


def resolve_intent(
    intent: SubmitState,
    *,
    api: Any,
    claims: ClaimsIndex | Any,
    owner: str,
    now: datetime,
    recheck: timedelta,
    reads: ResultsReads | None = None,
) -> tuple[Decision, tuple[str, ...]]:
    """Decide what became of the create recorded in ``intent``; return the decision and ``not_ours``.

    :param intent: the shard's ``intent`` state.
    :param api: lists batches (``iter_batches``) and reads an ended batch's ``result_ids``.
    :param claims: the storage root's claims index.
    :param owner: the shard's state file location, as claims name their owner.
    :param now: the current time (UTC).
    :param recheck: how long to wait before looking at a running candidate again.
    :param reads: how a short or missing results read is read again.
    :raises SubmitRecoveryError: an intent written without a marker (by version 1) cannot be proven, or
        a candidate's results could not be read whole within the bound.
    """
    if not intent.markers:
        raise SubmitRecoveryError(_no_marker_message(intent, owner))
    markers = set(intent.markers)
    not_ours = list(intent.not_ours)
    running: list[str] = []
    for batch in listed_after_intent(intent, api):
        batch_id = str(batch["id"])
        if total_requests(batch) != intent.request_count + 1 or batch_id in not_ours:
            continue
        claim: Claim | None = claims.read(batch_id)
        if claim is not None:
            if claim.owner == owner:
                return Adopt(batch, claim.marker_id), tuple(not_ours)
            continue
        if batch.get("processing_status") != "ended":
            running.append(batch_id)
            continue
        found = _marker_in_results(api, batch, markers, reads or ResultsReads())
        if found is not None:
            return Adopt(batch, found), tuple(not_ours)
        not_ours.append(batch_id)
    return _undecided(intent, running, now, recheck), tuple(not_ours)


def _undecided(intent: SubmitState, running: list[str], now: datetime, recheck: timedelta) -> Decision:
    if running:
        return Wait(
            now + recheck,
            f"{len(running)} running batch(es) of this shard's size may hold its lost create "
            f"({', '.join(running[:5])}); each is checked for the shard's marker once it ends",
        )
    settle_at = parse_utc(intent.settle_at) if intent.settle_at else now
    if now < settle_at:
        return Wait(
            settle_at,
            f"the create sent at {intent.intent_at} is unanswered and may still make a batch until "
            f"{format_utc(settle_at)}; no second create before then",
            nothing_listed=True,
        )
    return CreateAgain()


def _marker_in_results(api: Any, batch: Batch, markers: set[str], reads: ResultsReads) -> str | None:
    """Return the shard's marker found in an ended batch's results, ``None`` once they are read whole.

    :raises SubmitRecoveryError: the results stayed short or missing after every read of ``reads``.
    """
    batch_id = str(batch["id"])
    expected = total_requests(batch)
    problem = ""
    for attempt, delay in enumerate((0.0, *reads.delays)):
        if delay:
            log.info("Reading the results of batch %s again in %.0f s (%s)", batch_id, delay, problem)
            reads.sleep(delay)
        lines = 0
        try:
            for custom_id in api.result_ids(batch_id):
                if custom_id in markers:
                    return str(custom_id)
                lines += 1
        except (ResultsUnavailableError, ResultsStreamInterrupted) as exc:
            problem = f"read {attempt + 1}: {exc}"
            continue
        if lines == expected:
            return None
        problem = f"read {attempt + 1} gave {lines:,} result lines of {expected:,}"
    raise SubmitRecoveryError(
        f"the results of batch {batch_id}, a candidate for a create of this shard whose answer was lost, "
        f"could not be read whole ({problem}) after {len(reads.delays) + 1} reads; without them it "
        "cannot be told whether the batch is this shard's, so nothing is created. Clear the submit task "
        "to read them again later"
    )


def listed_after_intent(intent: SubmitState, api: Any) -> Iterator[Batch]:
    """Yield the batches listed above the ones the intent recorded, newest first.

    The list stops at the first batch the intent saw before its create; with none recorded (an empty
    workspace), or all of them deleted since, the whole list is read. No clock is compared.
    """
    seen_before = set(intent.listed_before)
    if intent.newest_batch_before is not None:
        seen_before.add(intent.newest_batch_before)
    for batch in api.iter_batches(RECOVERY_PAGE_SIZE):
        if batch.get("id") in seen_before:
            return
        yield batch


def total_requests(batch: Batch) -> int:
    """Return the number of requests of a batch (its ``request_counts`` always sum to it)."""
    counts = batch.get("request_counts") or {}
    return sum(int(value or 0) for value in counts.values())


def _no_marker_message(intent: SubmitState, owner: str) -> str:
    return (
        f"an earlier create for shard {intent.shard_uri} (intent at {intent.intent_at}) was sent by a "
        "version without marker requests, so its batch cannot be proven. The submit will not guess: "
        "find the batch "
        f'(same request count, created after the intent), write its id into {owner} as "batch_id" with '
        '"status": "submitted" and clear the task; or, if there is none, delete that file and clear the task'
    )
