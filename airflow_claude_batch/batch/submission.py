"""Submit a shard exactly once: the state machine, with every I/O passed in.

The API has no idempotency key and no metadata on a batch, so "at most once" rests on the shard's
state file (:mod:`~airflow_claude_batch.batch.state`):

1. ``submitted`` with the same fingerprint: re-attach to the recorded batch, no call.
2. ``intent`` (a create may have been sent, its answer never recorded): look the batch up. Candidates
   are the batches listed after the newest batch recorded with the intent (or, if that one is gone,
   created at most ``clock_skew`` before the intent), with the shard's request count, and not recorded
   by another shard of the run. One → adopt it. None → the create never happened: create. Several,
   or one that another shard still in flight could own → :class:`SubmitRecoveryError` (retryable: the
   other shard usually records its batch a moment later; otherwise the message says how to resolve).
3. No state, or ``failed``: write the intent, create once (the create is never retried
   automatically), write ``submitted``. A create that failed is looked up on the spot. If its batch is
   not listed and the API had answered with an error (:class:`CreateRefused`, or a
   ``BeforeSubmitError`` such as a rejected key), the create made no batch: the state becomes
   ``failed`` and the retry submits again. Without an answer (a timeout, a dropped connection) the
   intent stays, and the task's retry looks the batch up again before creating.

Whatever step a crash interrupts, the next attempt lands in one of these cases and never creates a
second batch for a shard whose first create reached the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from airflow_claude_batch.batch.limits import BODY_PREFIX, BODY_SUFFIX
from airflow_claude_batch.batch.results_reader import LineSplitter
from airflow_claude_batch.batch.state import (
    FAILED,
    INTENT,
    SUBMITTED,
    ShardFingerprint,
    SubmitState,
    format_utc,
    parse_utc,
    utc_now,
)
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    BeforeSubmitError,
    InputError,
    SubmitRecoveryError,
)

log = logging.getLogger(__name__)

DEFAULT_CLOCK_SKEW = timedelta(minutes=10)
#: Page size when listing batches to recover a lost create.
RECOVERY_PAGE_SIZE = 100

Batch = Mapping[str, Any]


class CreateRefused(Exception):
    """The API answered the create with an error status (429, 5xx, 529).

    The API finished with the request: if it made a batch anyway, that batch is listed by now, and if
    none is listed, none was made. ``BatchApi.create_batch`` raises it (from the original error).
    """


class BatchApi(Protocol):
    """The two API calls the submit needs."""

    def create_batch(self) -> Batch:
        """Send the shard as a new batch, once (no automatic retry); return the batch object.

        Raise :class:`CreateRefused` when the API answered with an error status, a
        ``BeforeSubmitError`` when it refused the request for good, anything else when the outcome
        is unknown (a timeout, a dropped connection).
        """
        ...

    def iter_batches(self, page_size: int) -> Iterator[Batch]:
        """Yield the workspace's batches, newest first, fetching pages of ``page_size`` lazily."""
        ...


class StateStore(Protocol):
    """Where the shard's submit state lives, and its siblings' states."""

    location: str

    def read(self) -> SubmitState | None:
        """Return the state, ``None`` when there is none; raise on any other read failure."""
        ...

    def write(self, state: SubmitState) -> None:
        """Write the state whole or not at all."""
        ...

    def siblings(self) -> Iterable[tuple[str, SubmitState]]:
        """Yield ``(location, state)`` of the other shards of the same run."""
        ...


@dataclass(frozen=True)
class ShardToSubmit:
    """The shard as the build described it.

    :param uri: the shard's requests file.
    :param request_count: requests in the shard.
    :param body_bytes: size of the create body.
    """

    uri: str
    request_count: int
    body_bytes: int


@dataclass(frozen=True)
class SubmitResult:
    """What the submit did.

    :param batch_id: the shard's batch.
    :param action: ``created`` (a create was sent now), ``reattached`` (recorded earlier) or
        ``recovered`` (an earlier create whose answer was lost, found by listing).
    :param request_count: requests in the batch.
    """

    batch_id: str
    action: Literal["created", "reattached", "recovered"]
    request_count: int


def submit_shard(
    shard: ShardToSubmit,
    *,
    api: BatchApi,
    store: StateStore,
    fingerprint: Callable[[], ShardFingerprint],
    now: Callable[[], datetime] = utc_now,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> SubmitResult:
    """Make sure the shard has exactly one batch, creating it only if no earlier attempt did.

    :param shard: the shard as built.
    :param api: create and list calls.
    :param store: the shard's state file and its siblings'.
    :param fingerprint: reads the shard file (digest, request count, body size).
    :param now: the clock (UTC).
    :param clock_skew: how far the API's clock may be behind ours when matching a lost create by time.
    :raises InputError: the shard file does not match its descriptor (nothing sent).
    :raises SubmitRecoveryError: an earlier create cannot be matched to one batch without help.
    :raises AfterSubmitError: the shard changed after it was submitted, or a create failed and its
        batch is not listed yet (the task's retry looks again before creating).
    """
    current = fingerprint()
    state = store.read()
    if state is not None and state.status == SUBMITTED:
        _check_unchanged(state, current, store)
        log.info("Shard %s was submitted before as batch %s; re-attaching", shard.uri, state.batch_id)
        return SubmitResult(str(state.batch_id), "reattached", state.request_count)
    if state is not None and state.status == FAILED:
        log.info("The last create for shard %s was refused (%s); submitting again", shard.uri, state.failure)
        state = None
    if state is not None:
        found = _recover(state, api, store, clock_skew)
        if found is not None:
            return _adopt(state, found, current, store)
        log.info(
            "No batch matches the intent recorded at %s for shard %s: creating it", state.intent_at, shard.uri
        )
    _check_matches_descriptor(shard, current)
    return _create(shard, current, api=api, store=store, now=now, clock_skew=clock_skew)


def _check_matches_descriptor(shard: ShardToSubmit, current: ShardFingerprint) -> None:
    if (current.request_count, current.body_bytes) != (shard.request_count, shard.body_bytes):
        raise InputError(
            f"the shard file {shard.uri} holds {current.request_count:,} requests in a "
            f"{current.body_bytes:,}-byte body, but its descriptor says {shard.request_count:,} requests "
            f"and {shard.body_bytes:,} bytes; the file changed or is incomplete since the build: clear "
            "the build task of this run to rebuild the shards (nothing was submitted)"
        )


def _check_unchanged(state: SubmitState, current: ShardFingerprint, store: StateStore) -> None:
    if state.fingerprint != current.sha256:
        raise AfterSubmitError(
            f"the shard file {state.shard_uri} changed after it was submitted as batch {state.batch_id} "
            f"(recorded in {store.location}); its results belong to the old content. Restore the shard "
            "file, or start a new run for the new content: it will not be submitted again in this run"
        )


def _create(
    shard: ShardToSubmit,
    current: ShardFingerprint,
    *,
    api: BatchApi,
    store: StateStore,
    now: Callable[[], datetime],
    clock_skew: timedelta,
) -> SubmitResult:
    newest = next(iter(api.iter_batches(1)), None)
    intent = SubmitState(
        shard_uri=shard.uri,
        fingerprint=current.sha256,
        request_count=current.request_count,
        body_bytes=current.body_bytes,
        intent_at=format_utc(now()),
        status=INTENT,
        newest_batch_before=str(newest["id"]) if newest is not None else None,
    )
    store.write(intent)
    try:
        batch = api.create_batch()
    except BeforeSubmitError as exc:
        # A definite refusal (a rejected key, an invalid body): no batch exists, no create is in flight.
        store.write(intent.failed(f"{type(exc).__name__}: {exc}"))
        raise
    except Exception as exc:
        log.warning(
            "The create call for shard %s failed (%s); looking for its batch", shard.uri, type(exc).__name__
        )
        found = _recover(intent, api, store, clock_skew)
        if found is not None:
            return _adopt(intent, found, current, store)
        if isinstance(exc, CreateRefused):
            store.write(intent.failed(str(exc)))
            raise AfterSubmitError(
                f"the create call for shard {shard.uri} was refused ({exc}) and made no batch; the task's "
                "retry submits it again"
            ) from exc
        raise AfterSubmitError(
            f"the create call for shard {shard.uri} failed ({type(exc).__name__}: {exc}) and no batch "
            f"for it is listed yet; the intent is recorded in {store.location}, so the task's retry "
            "looks for the batch again before creating one"
        ) from exc
    store.write(intent.submitted(str(batch["id"]), _created_at(batch)))
    log.info("Created batch %s for shard %s (%d requests)", batch["id"], shard.uri, intent.request_count)
    return SubmitResult(str(batch["id"]), "created", intent.request_count)


def _adopt(intent: SubmitState, batch: Batch, current: ShardFingerprint, store: StateStore) -> SubmitResult:
    state = intent.submitted(str(batch["id"]), _created_at(batch))
    store.write(state)
    log.info(
        "Found batch %s created for shard %s by an earlier attempt (intent at %s); adopted it",
        state.batch_id,
        intent.shard_uri,
        intent.intent_at,
    )
    _check_unchanged(state, current, store)
    return SubmitResult(str(state.batch_id), "recovered", state.request_count)


def _recover(intent: SubmitState, api: BatchApi, store: StateStore, clock_skew: timedelta) -> Batch | None:
    """Return the batch an earlier create made for ``intent``, ``None`` if it made none."""
    siblings = list(store.siblings())
    recorded = {state.batch_id for _, state in siblings if state.batch_id}
    in_flight = [(where, state) for where, state in siblings if state.status == INTENT]
    candidates = [
        batch
        for batch in _listed_after_intent(intent, api, clock_skew)
        if str(batch["id"]) not in recorded and total_requests(batch) == intent.request_count
    ]
    if not candidates:
        return None
    if len(candidates) > 1:
        raise SubmitRecoveryError(_several_candidates_message(intent, candidates, store))
    claimants = [
        where
        for where, state in in_flight
        if state.request_count == intent.request_count and _could_be_for(candidates[0], state, clock_skew)
    ]
    if claimants:
        raise SubmitRecoveryError(_shared_candidate_message(intent, candidates[0], claimants, store))
    return candidates[0]


def _listed_after_intent(intent: SubmitState, api: BatchApi, clock_skew: timedelta) -> Iterator[Batch]:
    """Yield the batches that may have been created by the intent's create call, newest first."""
    earliest = intent.intent_time - clock_skew
    for batch in api.iter_batches(RECOVERY_PAGE_SIZE):
        if intent.newest_batch_before is not None and batch.get("id") == intent.newest_batch_before:
            return
        created_at = _created_time(batch)
        if created_at is not None and created_at < earliest:
            return
        yield batch


def _could_be_for(batch: Batch, state: SubmitState, clock_skew: timedelta) -> bool:
    created_at = _created_time(batch)
    return created_at is None or created_at >= state.intent_time - clock_skew


def total_requests(batch: Batch) -> int:
    """Return the number of requests of a batch (its ``request_counts`` always sum to it)."""
    counts = batch.get("request_counts") or {}
    return sum(int(value or 0) for value in counts.values())


def _created_at(batch: Batch) -> str | None:
    value = batch.get("created_at")
    return str(value) if value is not None else None


def _created_time(batch: Batch) -> datetime | None:
    value = batch.get("created_at")
    try:
        return parse_utc(value) if value else None
    except ValueError:
        return None


def _describe(batch: Batch) -> str:
    return (
        f"{batch.get('id')} (created {batch.get('created_at')}, {total_requests(batch):,} requests, "
        f"{batch.get('processing_status')})"
    )


def _several_candidates_message(intent: SubmitState, candidates: list[Batch], store: StateStore) -> str:
    listed = "; ".join(_describe(batch) for batch in candidates)
    return (
        f"an earlier create for shard {intent.shard_uri} (intent at {intent.intent_at}) may have made one "
        f"of {len(candidates)} batches with its {intent.request_count:,} requests, and none of them is "
        f"recorded by another shard of this run: {listed}. The submit will not guess. To resolve: write the "
        f'right id into {store.location} as "batch_id" with "status": "submitted" and clear the task, or '
        "cancel the extra batches (another run's shards may own them: check before cancelling)"
    )


def _shared_candidate_message(
    intent: SubmitState, candidate: Batch, claimants: list[str], store: StateStore
) -> str:
    return (
        f"an earlier create for shard {intent.shard_uri} (intent at {intent.intent_at}) may have made batch "
        f"{_describe(candidate)}, but so may the shards whose submit is still in flight: "
        f"{', '.join(claimants)}. A retry resolves this once they record their batch. If it persists, "
        f'write the right id into {store.location} as "batch_id" with "status": "submitted" and clear '
        "the task"
    )


def iter_batch_body(
    chunks: Iterable[bytes], *, request_count: int, body_bytes: int, source: str
) -> Iterator[bytes]:
    """Yield the create body ``{"requests":[line1,line2,...]}`` of a shard, in blocks of about 1 MB.

    The lines are sent as they are stored (the build encodes them exactly as the SDK would). The body
    is checked against the declared size as it goes: if the file does not match, :class:`InputError`
    is raised before a byte beyond ``body_bytes`` is produced, so a request sent with that
    ``Content-Length`` is cut short and cannot create a batch.

    :param chunks: the shard file, in blocks.
    :param request_count: requests the shard must hold.
    :param body_bytes: the exact size the body must have.
    :param source: the shard's location, for error messages.
    """
    produced = 0
    count = 0
    block: list[bytes] = [BODY_PREFIX]
    block_size = len(BODY_PREFIX)
    splitter = LineSplitter()

    def mismatch() -> InputError:
        return InputError(
            f"the shard file {source} does not match its descriptor ({request_count:,} requests, "
            f"{body_bytes:,} body bytes); it changed since the build: clear the build task to rebuild"
        )

    def lines() -> Iterator[bytes]:
        for chunk in chunks:
            yield from splitter.feed(chunk)
        tail = splitter.finish()
        if tail is not None:
            yield tail

    for line in lines():
        count += 1
        piece = line if count == 1 else b"," + line
        block.append(piece)
        block_size += len(piece)
        if produced + block_size + len(BODY_SUFFIX) > body_bytes or count > request_count:
            raise mismatch()
        if block_size >= 1 << 20:
            produced += block_size
            yield b"".join(block)
            block, block_size = [], 0
    if count != request_count or produced + block_size + len(BODY_SUFFIX) != body_bytes:
        raise mismatch()
    block.append(BODY_SUFFIX)
    yield b"".join(block)
