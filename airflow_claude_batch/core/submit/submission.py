"""Submit a shard exactly once: the state machine, with every I/O passed in.

The API has no idempotency key and no metadata on a batch, so "at most once" rests on the shard's
state file (:mod:`~airflow_claude_batch.core.submit.state`), one marker request per create
(:mod:`~airflow_claude_batch.core.requests.marker`) and the storage root's claims index
(:mod:`~airflow_claude_batch.core.run.claims`):

1. ``submitted`` with the same fingerprint: re-attach to the recorded batch, no call.
2. ``intent`` (a create may have been sent, its answer never recorded): find out what became of it
   (:mod:`~airflow_claude_batch.core.submit.recovery`): adopt the batch only with proof (a claim, or the
   shard's marker in its results), wait while a candidate still runs or the create may still land,
   and send again only when it can no longer have made a batch.
3. No state, or ``failed``: write the intent (a new attempt id and marker), create once (never retried
   automatically), then claim the batch and write ``submitted``. A create the API refused (4xx) made
   no batch: the state becomes ``failed``, nothing is adopted, and the task's retry sends it again. A
   create refused for now (429, 529: no capacity) made no batch either: it waits and is sent again
   (:mod:`~airflow_claude_batch.core.submit.pacing`). Only those answers, with the API's own error body,
   prove that nothing was made. Any other outcome (a timeout, a dropped connection, 408, 409, any 5xx,
   a gateway's error page, a 4xx without the API's error body) is unknown: the intent and its marker
   are kept, candidates are looked at until proven, and nothing is created again before ``settle_at``
   (a gateway's 504 can be followed by the create landing seconds later).
4. ``failed`` with ``retry_at`` (refused for now): wait until then, and behind any lower shard of the
   round that waits for capacity; then prove the refused attempt made no batch, as for an intent.

The intent is written exclusively by the storage (create-only, or replacing exactly the version read:
:mod:`~airflow_claude_batch.core.run.conditional_writes`): of two submits of one shard at the same moment,
one writes its intent and creates; the other loses the write, waits for the winner's record and ends
holding the same batch.

Whatever step a crash interrupts, the next attempt lands in one of these cases: no shard ever adopts a
batch that is not its own, and none creates again while its first create may still have made one.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_claude_batch.core.requests.marker import marker_id, marker_line
from airflow_claude_batch.core.run.claims import Claim
from airflow_claude_batch.core.submit.intent_race import (
    MAX_RACES,
    noting_not_ours,
    record_change,
    wait_for_peer,
)
from airflow_claude_batch.core.submit.pacing import (
    CreateThrottled,
    ShardLine,
    behind_reason,
    refusal_reason,
    refused_for_now,
    timeout_message,
)
from airflow_claude_batch.core.submit.recovery import (
    Adopt,
    CreateAgain,
    Wait,
    resolve_intent,
)
from airflow_claude_batch.core.submit.state import (
    FAILED,
    INTENT,
    LISTED_BEFORE,
    SUBMITTED,
    ShardFingerprint,
    SubmitState,
    format_utc,
    parse_utc,
)
from airflow_claude_batch.core.submit.submit_inputs import (
    Batch,
    BatchApi,
    Claims,
    CreateOutcomeUnknown,
    CreateRefused,
    ShardToSubmit,
    StateStore,
    SubmitResult,
    SubmitTiming,
    SubmitWait,
)
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    BeforeSubmitError,
    InputError,
    PacingTimeoutError,
    WriteConflictError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Submission:
    shard: ShardToSubmit
    api: BatchApi
    store: StateStore
    claims: Claims
    timing: SubmitTiming
    line: ShardLine | None


def submit_shard(
    shard: ShardToSubmit,
    *,
    api: BatchApi,
    store: StateStore,
    claims: Claims,
    fingerprint: Callable[[], ShardFingerprint],
    timing: SubmitTiming | None = None,
    line: ShardLine | None = None,
) -> SubmitResult | SubmitWait:
    """Make sure the shard has exactly one batch, creating it only if no earlier attempt did.

    :param shard: the shard as built.
    :param api: create, list and result-id calls.
    :param store: the shard's state file.
    :param claims: the storage root's claims index.
    :param fingerprint: reads the shard file (digest, request count, body size, model).
    :param timing: clocks and waits.
    :param line: the round's shards, so that this one does not create before a lower one waiting for
        capacity; ``None``: no order kept.
    :return: the shard's batch, or a :class:`SubmitWait` saying when to call again.
    :raises InputError: the shard file does not match its descriptor (nothing sent).
    :raises SubmitRecoveryError: an earlier create cannot be proven without help.
    :raises PacingTimeoutError: the shard waited for capacity past ``timing.pacing_deadline``.
    :raises AfterSubmitError: the shard changed after it was submitted, or a create failed and the
        task's retry must send it again.
    """
    job = _Submission(shard, api, store, claims, timing or SubmitTiming(), line)
    current = fingerprint()
    return _from_state(job, current, store.read(), races=0)


def _from_state(
    job: _Submission, current: ShardFingerprint, state: SubmitState | None, *, races: int
) -> SubmitResult | SubmitWait:
    """Go on from the shard's state as just read."""
    shard, store = job.shard, job.store
    if state is not None and state.status == SUBMITTED:
        _check_unchanged(state, current, store)
        log.info("Shard %s was submitted before as batch %s; re-attaching", shard.uri, state.batch_id)
        return SubmitResult(str(state.batch_id), "reattached", state.request_count, state.marker_id)
    if state is not None and state.status == FAILED and state.retry_at is None:
        log.info("The last create for shard %s was refused (%s); submitting again", shard.uri, state.failure)
        state = None
    earlier: SubmitState | None = None
    if state is not None:
        outcome = _paced_follow_up(job, state) if state.status == FAILED else None
        outcome = outcome or _follow_up(job, state, current)
        if outcome is not None:
            return outcome
        log.info(
            "The create recorded at %s for shard %s made no batch: it may be sent again",
            state.intent_at,
            shard.uri,
        )
        earlier = store.read()
    _check_matches_descriptor(shard, current)
    return _create(job, current, earlier, races)


def _follow_up(
    job: _Submission, intent: SubmitState, current: ShardFingerprint
) -> SubmitResult | SubmitWait | None:
    """Resolve an unanswered intent: the adopted batch, a wait, or ``None`` when it made no batch."""
    now = job.timing.now()
    decision, not_ours = resolve_intent(
        intent,
        api=job.api,
        claims=job.claims,
        owner=job.store.location,
        now=now,
        recheck=job.timing.recheck,
        reads=job.timing.reads,
    )
    if not_ours != intent.not_ours:
        intent = _record(job, intent, noting_not_ours(not_ours))
    if isinstance(decision, Adopt):
        return _adopt(job, intent, decision, current)
    if isinstance(decision, Wait):
        log.info(
            "Shard %s: %s; looking again at %s", job.shard.uri, decision.reason, format_utc(decision.until)
        )
        return SubmitWait(decision.until, decision.reason, decision.nothing_listed)
    assert isinstance(decision, CreateAgain)
    return None


def _paced_follow_up(job: _Submission, refused: SubmitState) -> SubmitWait | None:
    """Wait until a create refused for now may be sent again; ``None`` when its time has come."""
    retry_at = parse_utc(str(refused.retry_at))
    if job.timing.now() < retry_at:
        return _capacity_wait(job, retry_at, refusal_reason(refused))
    return _behind(job)  # before the lookup: a shard waiting behind another calls nothing


def _behind(job: _Submission) -> SubmitWait | None:
    """Wait behind the lowest shard of the round that waits for capacity; ``None`` when none does."""
    ahead = job.line.ahead(job.timing.now()) if job.line is not None else None
    if ahead is None or job.line is None:
        return None
    until = max(ahead.retry_at, job.timing.now()) + job.timing.behind_margin
    return _capacity_wait(job, until, behind_reason(ahead, job.line.round_index))


def _capacity_wait(job: _Submission, until: datetime, reason: str) -> SubmitWait:
    """Wait for the API's capacity until ``until``, or fail when the deadline has passed."""
    deadline = job.timing.pacing_deadline
    if deadline is not None and job.timing.now() >= deadline:
        timeout = job.timing.pacing_timeout or timedelta(0)
        raise PacingTimeoutError(timeout_message(job.shard.uri, reason, timeout))
    until = until if deadline is None else min(until, deadline)
    log.info("Shard %s waits for capacity: %s; next try at %s", job.shard.uri, reason, format_utc(until))
    return SubmitWait(until, reason, capacity=True)


def _check_matches_descriptor(shard: ShardToSubmit, current: ShardFingerprint) -> None:
    if (current.request_count, current.body_bytes) != (shard.request_count, shard.body_bytes):
        raise InputError(
            f"the shard file {shard.uri} holds {current.request_count:,} requests in a "
            f"{current.body_bytes:,}-byte body, but its descriptor says {shard.request_count:,} requests "
            f"and {shard.body_bytes:,} bytes; the file changed or is incomplete since the build: clear "
            "the build task of this run to rebuild the shards (nothing was submitted)"
        )
    if current.model is None:
        raise InputError(
            f"the first request of shard file {shard.uri} names no model, so its batch's marker request "
            "cannot be made; clear the build task of this run to rebuild the shards (nothing was submitted)"
        )


def _check_unchanged(state: SubmitState, current: ShardFingerprint, store: StateStore) -> None:
    if state.fingerprint != current.sha256:
        raise AfterSubmitError(
            f"the shard file {state.shard_uri} changed after it was submitted as batch {state.batch_id} "
            f"(recorded in {store.location}); its results belong to the old content. Restore the shard "
            "file, or start a new run for the new content: it will not be submitted again in this run"
        )


def _new_intent(job: _Submission, current: ShardFingerprint, earlier: SubmitState | None) -> SubmitState:
    # The newest batches before the create: the recovery lists only what is above them (no clock).
    listed = [
        str(batch["id"]) for batch in itertools.islice(job.api.iter_batches(LISTED_BEFORE), LISTED_BEFORE)
    ]
    intent_id = uuid.uuid4().hex
    moment = job.timing.now()
    return SubmitState(
        shard_uri=job.shard.uri,
        fingerprint=current.sha256,
        request_count=current.request_count,
        body_bytes=current.body_bytes,
        intent_at=format_utc(moment),
        status=INTENT,
        newest_batch_before=listed[0] if listed else None,
        listed_before=tuple(listed),
        intent_id=intent_id,
        marker_id=marker_id(job.shard.uri, current.sha256, intent_id),
        settle_at=format_utc(moment + job.timing.settle_after),
        earlier_markers=_unresolved_markers(earlier),
        not_ours=earlier.not_ours if earlier is not None else (),
        refusals=earlier.refusals if earlier is not None else 0,
    )


def _unresolved_markers(earlier: SubmitState | None) -> tuple[str, ...]:
    """The markers a batch of the shard may still hold; a refused attempt's was just shown to be in none."""
    if earlier is None:
        return ()
    return earlier.earlier_markers if earlier.retry_at is not None else earlier.markers


def _create(
    job: _Submission, current: ShardFingerprint, earlier: SubmitState | None, races: int
) -> SubmitResult | SubmitWait:
    behind = _behind(job)
    if behind is not None:
        return behind
    intent = _new_intent(job, current, earlier)
    try:
        job.store.write(intent)  # exclusive: of two submits at once, one writes and creates
    except WriteConflictError:
        return _after_lost_race(job, current, races + 1)
    try:
        batch = job.api.create_batch(marker_line(str(intent.marker_id), str(current.model)))
    except BeforeSubmitError as exc:
        # A definite refusal (a rejected key, an invalid body): no batch exists, no create is in flight.
        refusal = f"{type(exc).__name__}: {exc}"
        _record(job, intent, lambda state: state.failed(refusal))
        raise
    except CreateThrottled as exc:
        throttled, moment = exc, job.timing.now()
        refused = _record(job, intent, lambda state: refused_for_now(state, throttled, moment))
        return _capacity_wait(job, parse_utc(str(refused.retry_at)), refusal_reason(refused))
    except CreateRefused as exc:
        refusal = str(exc)
        _record(job, intent, lambda state: state.failed(refusal))
        raise AfterSubmitError(
            f"the create call for shard {job.shard.uri} was refused ({exc}) and made no batch; the task's "
            "retry submits it again"
        ) from exc
    except Exception as exc:
        return _after_lost_answer(job, intent, current, exc)
    job.claims.write(
        Claim(str(batch["id"]), job.store.location, intent.marker_id, format_utc(job.timing.now()))
    )
    _record(job, intent, lambda state: state.submitted(str(batch["id"]), _created_at(batch)))
    log.info("Created batch %s for shard %s (%d requests)", batch["id"], job.shard.uri, intent.request_count)
    return SubmitResult(str(batch["id"]), "created", intent.request_count, intent.marker_id)


def _after_lost_answer(
    job: _Submission, intent: SubmitState, current: ShardFingerprint, exc: Exception
) -> SubmitResult | SubmitWait:
    """The create's outcome is unknown: look for its batch, or wait until it can be told.

    A server error or a gateway's page is no proof either: a gateway's 504 may be followed by the create
    landing later, so ``settle_at`` stays the client's timeout plus the margin after the intent.
    """
    log.warning(
        "The create call for shard %s %s (%s: %s); its outcome is unknown, looking for its batch",
        job.shard.uri,
        "got an answer that proves nothing" if isinstance(exc, CreateOutcomeUnknown) else "got no answer",
        type(exc).__name__,
        exc,
    )
    decision = _follow_up(job, intent, current)
    if isinstance(decision, SubmitWait) and decision.nothing_listed:
        # Nothing to wait for but time: the task's retry looks again (and waits until then), so that a
        # create failing again and again uses up retries instead of looping in one attempt.
        raise AfterSubmitError(
            f"the create call for shard {job.shard.uri} failed ({type(exc).__name__}: {exc}) and no batch "
            f"for it is listed yet; the intent is kept in {job.store.location}: the task's retry looks "
            f"again and sends nothing before {intent.settle_at}"
        ) from exc
    if decision is not None:
        return decision
    latest = job.store.read()  # the intent as last written here (with any batch noted as not ours)
    if latest is None or latest.intent_id != intent.intent_id or latest.status != INTENT:
        raise AfterSubmitError(
            f"another submit of shard {job.shard.uri} recorded its state meanwhile ({job.store.location}); "
            "the task's retry goes on from it"
        ) from exc
    failure = f"{type(exc).__name__}: {exc}"
    _record(job, latest, lambda state: state.failed(failure))
    raise AfterSubmitError(
        f"the create call for shard {job.shard.uri} failed ({type(exc).__name__}: {exc}) and made no batch; "
        "the task's retry submits it again"
    ) from exc


def _adopt(job: _Submission, intent: SubmitState, found: Adopt, current: ShardFingerprint) -> SubmitResult:
    batch_id = str(found.batch["id"])
    job.claims.write(Claim(batch_id, job.store.location, found.marker_id, format_utc(job.timing.now())))
    state = _record(
        job,
        intent,
        lambda recorded: dataclasses.replace(
            recorded.submitted(batch_id, _created_at(found.batch)), marker_id=found.marker_id
        ),
    )
    log.info(
        "Found batch %s created for shard %s by an earlier attempt (intent at %s), proven by %s; adopted it",
        batch_id,
        intent.shard_uri,
        intent.intent_at,
        "its claim" if found.marker_id is None else f"its marker {found.marker_id}",
    )
    _check_unchanged(state, current, job.store)
    return SubmitResult(batch_id, "recovered", state.request_count, state.marker_id)


def _created_at(batch: Batch) -> str | None:
    value = batch.get("created_at")
    return str(value) if value is not None else None


def _record(
    job: _Submission, intent: SubmitState, change: Callable[[SubmitState], SubmitState]
) -> SubmitState:
    return record_change(job.store, job.shard.uri, intent, change)


def _after_lost_race(job: _Submission, current: ShardFingerprint, races: int) -> SubmitResult | SubmitWait:
    """Another submit of this shard wrote its state first: go on from its record once it is there."""
    if races > MAX_RACES:
        raise AfterSubmitError(
            f"shard {job.shard.uri} lost the write of its intent {races} times in a row to other submits of "
            f"it ({job.store.location}); the task's retry goes on from what they recorded"
        )
    state = wait_for_peer(job.store, job.claims, job.shard.uri, job.timing)
    return _from_state(job, current, state, races=races)
