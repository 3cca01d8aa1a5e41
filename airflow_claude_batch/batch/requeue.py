"""Which requests of a round go to the next round, which to the dead-letter file, which stay pending.

The rule (``RequeueRule.decide``), applied to each row of a shard's ``errored``, ``expired`` and
``canceled`` files:

- ``expired``: requeued; the batch ended before the request was processed.
- ``errored`` with a retryable type (``overloaded_error``, ``api_error``, ``rate_limit_error``,
  ``timeout_error``): requeued. Any other type is dead-lettered with its reason: sending the same request
  again would fail the same way.
- ``canceled`` in a batch that was cancelled on purpose (its ``cancel_initiated_at`` is set: by a person,
  or by the wait's ``cancel_on_timeout``): a decision, so not requeued but kept as pending with the reason
  "canceled by user" (``requeue_user_canceled=True`` requeues them). Canceled without a cancellation on
  record: requeued when ``requeue_canceled`` (the default).

The report applies the same rule to the last round, where nothing is requeued any more: what would be
requeued is listed as pending, never dropped. With ``retry_errored_sync`` the retryable errored requests
are first sent once as synchronous Messages calls at standard prices (recorded in the shard's
``sync_retry.jsonl``); those that still fail with a retryable error go to the next round.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson

from airflow_claude_batch.batch.passthrough import load_passthrough, with_passthrough
from airflow_claude_batch.batch.pricing import PriceTable
from airflow_claude_batch.batch.routing import (
    OutputValidator,
    RowPricer,
    answer_row,
    error_row,
    is_retryable_error,
    iter_request_lines,
)
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.sharding import ShardLimits, ShardWriter
from airflow_claude_batch.batch.shards import ShardDescriptor
from airflow_claude_batch.batch.storage import StoragePath, atomic_writer, iter_jsonl, read_json, write_json
from airflow_claude_batch.exceptions import ClaudeBatchError, ReconciliationError, StorageError

if TYPE_CHECKING:
    from airflow_claude_batch.batch.budget import RoundBudget

log = logging.getLogger(__name__)

REQUEUE_SCHEMA_VERSION = 1
#: The outcome files whose rows are not final answers.
UNFINISHED_OUTCOMES = ("errored", "expired", "canceled")
SYNC_RETRY_FILE = "sync_retry.jsonl"
REQUEUE_RECORD_FILE = "requeue.json"
SHARD_LIST_FILE = "shards.json"
BUDGET_HELD_FILE = "budget-held.jsonl"

_DEAD_LETTER_HINTS = {
    "invalid_request_error": "the API rejected the request; fix its params (model, max_tokens, messages)",
    "not_found_error": "the model or a resource was not found; check the model name",
    "permission_error": "the key may not use this model or feature; check the workspace's access",
    "authentication_error": "the API key was rejected; fix the connection",
    "billing_error": "the account has a billing problem; fix it in the console",
    "request_too_large": "the request is over the size limit; shorten the prompt",
}


class Decision(enum.Enum):
    """What happens to an unfinished request."""

    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"
    HOLD = "hold"  # neither retried nor dead: listed as pending


@dataclass(frozen=True)
class Verdict:
    """A decision and the reason a person reads in the dead-letter or pending file."""

    decision: Decision
    reason: str


@dataclass(frozen=True)
class RequeueRule:
    """The rule for unfinished requests (see the module's docstring).

    :param requeue_canceled: requeue canceled requests of a batch nobody cancelled on purpose.
    :param requeue_user_canceled: requeue canceled requests even when the batch was cancelled on purpose.
    """

    requeue_canceled: bool = True
    requeue_user_canceled: bool = False

    def decide(self, outcome: str, row: Mapping[str, Any]) -> Verdict:
        """Return the verdict for one row of an ``errored``, ``expired`` or ``canceled`` file."""
        if outcome == "expired":
            return Verdict(Decision.REQUEUE, "expired: the batch ended before the request was processed")
        if outcome == "errored":
            error_type = row.get("error_type")
            if is_retryable_error(error_type):
                return Verdict(Decision.REQUEUE, f"retryable error: {error_type}")
            hint = _DEAD_LETTER_HINTS.get(str(error_type), "retrying the same request will not help")
            return Verdict(Decision.DEAD_LETTER, f"non-retryable error {error_type}: {hint}")
        if outcome == "canceled":
            if row.get("cancel_initiated_at"):
                if self.requeue_user_canceled:
                    return Verdict(Decision.REQUEUE, "canceled by user (requeue_user_canceled is on)")
                return Verdict(Decision.HOLD, "canceled by user")
            if self.requeue_canceled:
                return Verdict(Decision.REQUEUE, "canceled")
            return Verdict(Decision.HOLD, "canceled (requeue_canceled is off)")
        raise ValueError(f"outcome {outcome!r} is final; only {UNFINISHED_OUTCOMES} are decided")


def dead_letter_row(row: Mapping[str, Any], round_index: int, reason: str) -> dict[str, Any]:
    """Return a dead-letter row: ``custom_id``, ``round``, ``reason``, ``error_type``, ``message``."""
    return {
        "custom_id": row["custom_id"],
        "round": round_index,
        "reason": reason,
        "error_type": row.get("error_type"),
        "message": row.get("message"),
    }


def pending_row(custom_id: str, round_index: int, last_outcome: str, reason: str) -> dict[str, Any]:
    """Return a pending row: ``custom_id``, ``round``, ``last_outcome``, ``reason``."""
    return {"custom_id": custom_id, "round": round_index, "last_outcome": last_outcome, "reason": reason}


def iter_unfinished_rows(
    folder: RunFolder, round_index: int, shard_index: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(outcome, row)`` for the shard's errored, expired and canceled rows.

    :raises StorageError: when the shard's fanout has not written its files.
    """
    for outcome in UNFINISHED_OUTCOMES:
        path = folder.shard_outcome(round_index, shard_index, outcome)
        if not path.exists():
            raise StorageError(
                f"round {round_index}, shard {shard_index}: {path} is missing, so the shard's fanout did "
                "not finish; run the fanout of this shard first"
            )
        for row in iter_jsonl(path):
            yield outcome, row


def sync_retry_path(folder: RunFolder, round_index: int, shard_index: int) -> StoragePath:
    """Return the shard's ``sync_retry.jsonl`` (beside its outcome files)."""
    return folder.shard_outcome(round_index, shard_index, "succeeded").parent / SYNC_RETRY_FILE


def requeue_record_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/requeue.json``, written last by the requeue of round ``r``."""
    return folder.round_dir(round_index) / REQUEUE_RECORD_FILE


def budget_held_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/budget-held.jsonl``: pending rows of requests the budget kept from being sent."""
    return folder.round_dir(round_index) / BUDGET_HELD_FILE


def shard_list_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/shards.json``: the round's shard descriptors."""
    return folder.round_dir(round_index) / SHARD_LIST_FILE


# --------------------------------------------------------------------------------------------------
# Synchronous retry
# --------------------------------------------------------------------------------------------------


class SyncRequestError(ClaudeBatchError):
    """A synchronous Messages call failed with an API error.

    :param error_type: the API's error type (``overloaded_error``, ``invalid_request_error`` ...).
    :param message: the API's message.
    :param request_id: the API's request id, when known.
    :param endpoint_fault: the failure is not the request's own: the synchronous endpoint is missing
        (a gateway that forwards only the batch endpoints), unreachable, or refuses the key. The request
        then falls back to the next round, never to the dead-letter file, and the round sends no more
        synchronous calls.
    """

    def __init__(
        self, error_type: str, message: str, request_id: str | None = None, *, endpoint_fault: bool = False
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.endpoint_fault = endpoint_fault
        super().__init__(f"{error_type}: {message}")


#: Sends one request's Messages params synchronously and returns the Message as a dict; raises
#: ``SyncRequestError`` for an API error.
SendMessage = Callable[[Mapping[str, Any]], Mapping[str, Any]]

#: Synchronous calls in flight at once, by default.
DEFAULT_SYNC_CONCURRENCY = 4


@dataclass(frozen=True)
class SyncRetry:
    """Send errored requests once as synchronous Messages calls (full price).

    :param send: the call.
    :param prices: prices the answers at standard (synchronous) rates.
    :param validator: the user's parser/schema for the answers.
    :param concurrency: calls in flight at once (a shard's calls are sent through a pool of this size).
    """

    send: SendMessage
    prices: PriceTable
    validator: OutputValidator | None = None
    concurrency: int = DEFAULT_SYNC_CONCURRENCY
    _pricer: RowPricer = field(init=False, repr=False, compare=False)
    _broken: list[str] = field(init=False, repr=False, compare=False, default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pricer", RowPricer(self.prices, batch=False))
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")

    @property
    def endpoint_broken(self) -> str | None:
        """Why the synchronous endpoint is not used any more in this round, or ``None``."""
        return self._broken[0] if self._broken else None

    def retry(self, custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return the ``sync_retry`` row: ``outcome`` (succeeded / invalid_output / errored /
        fell_back), ``price`` ("standard") and the fields of the matching outcome row. ``fell_back``
        rows (the endpoint's fault, nothing billed) are requeued."""
        broken = self.endpoint_broken
        if broken is not None:
            return self._fell_back(custom_id, broken, sent=False)
        try:
            message = self.send(params)
        except SyncRequestError as exc:
            if exc.endpoint_fault:
                reason = f"{exc.error_type}: {exc.message}"
                self._broken.append(reason)
                log.warning(
                    "the synchronous endpoint failed not by the request's fault (%s); this round's "
                    "remaining retryable errors are requeued without synchronous calls",
                    reason,
                )
                return self._fell_back(custom_id, reason, sent=True)
            error = {"error": {"type": exc.error_type, "message": exc.message}, "request_id": exc.request_id}
            return {"outcome": "errored", "price": "standard", **error_row(custom_id, error)}
        outcome, row, _ = answer_row(custom_id, message, pricer=self._pricer, validator=self.validator)
        return {"outcome": outcome, "price": "standard", **row}

    @staticmethod
    def _fell_back(custom_id: str, reason: str, *, sent: bool) -> dict[str, Any]:
        return {
            "outcome": "fell_back",
            "custom_id": custom_id,
            "retryable": True,
            "sent": sent,
            "message": f"synchronous endpoint unusable ({_short_reason(reason)}); requeued",
            "cost_usd": 0.0,
        }

    def retry_many(self, requests: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """Return the rows of ``retry`` for each ``(custom_id, params)``, in order, with at most
        ``concurrency`` calls in flight."""
        if self.concurrency == 1 or len(requests) <= 1:
            return [self.retry(custom_id, params) for custom_id, params in requests]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sync-retry") as pool:
            return list(pool.map(lambda item: self.retry(*item), requests))


def _short_reason(reason: str, limit: int = 300) -> str:
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# The requeue of one round
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequeueRecord:
    """What the requeue of round ``round`` decided; written last, so its presence means "done".

    :param round: the round that was read.
    :param requeued: requests written to round ``round + 1``.
    :param dead_lettered: requests written to ``round-r/dead-letter.jsonl``.
    :param held: requests neither requeued nor dead (pending, e.g. canceled by user).
    :param sync_succeeded: requests answered by the synchronous retry.
    :param sync_invalid_output: synchronous answers the parser/schema rejected.
    :param next_shards: the descriptors of round ``round + 1`` (as dicts).
    :param requeue_canceled: the rule's setting.
    :param requeue_user_canceled: the rule's setting.
    :param retry_errored_sync: whether errored requests were retried synchronously.
    :param budget_held: requests the budget kept from a synchronous retry or the next round (pending,
        in ``round-r/budget-held.jsonl``).
    :param sync_fell_back: retryable errors requeued because the synchronous endpoint was missing,
        unreachable or refused them not by their own fault.
    """

    round: int
    requeued: int
    dead_lettered: int
    held: int
    sync_succeeded: int = 0
    sync_invalid_output: int = 0
    next_shards: list[dict[str, Any]] = field(default_factory=list)
    requeue_canceled: bool = True
    requeue_user_canceled: bool = False
    retry_errored_sync: bool = False
    budget_held: int = 0
    sync_fell_back: int = 0
    schema_version: int = REQUEUE_SCHEMA_VERSION

    @property
    def rule(self) -> RequeueRule:
        return RequeueRule(self.requeue_canceled, self.requeue_user_canceled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequeueRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def read_requeue_record(folder: RunFolder, round_index: int) -> RequeueRecord | None:
    """Return the requeue record of a round, or ``None`` when that round was not requeued."""
    data = read_json(requeue_record_path(folder, round_index))
    return None if data is None else RequeueRecord.from_dict(data)


@dataclass
class _Tally:
    requeued: int = 0
    dead_lettered: int = 0
    held: int = 0
    sync_succeeded: int = 0
    sync_invalid_output: int = 0
    budget_held: int = 0
    sync_fell_back: int = 0


@dataclass
class _Allowance:
    """What the budget lets this requeue send (see ``budget.RoundBudget``)."""

    budget: RoundBudget
    admit_round: bool
    round_cost: float
    sync_left: float


class _RoundRequeue:
    """Select one shard at a time; memory holds one shard's selected ids."""

    def __init__(
        self,
        folder: RunFolder,
        round_index: int,
        rule: RequeueRule,
        dead_letter_out: IO[bytes],
        add_request: Callable[[bytes, str], None],
        sync: SyncRetry | None,
        allowance: _Allowance | None = None,
        held_out: IO[bytes] | None = None,
    ) -> None:
        self.folder = folder
        self.round_index = round_index
        self.rule = rule
        self.dead_letter_out = dead_letter_out
        self.add_request = add_request
        self.sync = sync
        self.allowance = allowance
        self.held_out = held_out
        self.tally = _Tally()

    def _hold_for_budget(self, custom_id: str, outcome: str, reason: str) -> None:
        assert self.held_out is not None
        self.held_out.write(orjson.dumps(pending_row(custom_id, self.round_index, outcome, reason)) + b"\n")
        self.tally.budget_held += 1

    def dead_letter(self, row: Mapping[str, Any], reason: str) -> None:
        self.dead_letter_out.write(orjson.dumps(dead_letter_row(row, self.round_index, reason)) + b"\n")
        self.tally.dead_lettered += 1

    def shard(self, shard: ShardDescriptor, requests_path: StoragePath) -> None:
        selected = self._select(shard.index)
        if not selected:
            return
        with ExitStack() as stack:
            sync_out: IO[bytes] | None = None
            done: dict[str, dict[str, Any]] = {}
            if self.sync is not None and any(mode == "sync" for mode, _ in selected.values()):
                done = self._earlier_sync_rows(shard.index)
                sync_out = stack.enter_context(
                    atomic_writer(sync_retry_path(self.folder, self.round_index, shard.index))
                )
            to_send: list[tuple[str, bytes]] = []
            for custom_id, line in iter_request_lines(requests_path):
                mode = selected.pop(custom_id, None)
                if mode is None:
                    continue
                if mode[0] == "requeue":
                    self._requeue(custom_id, line, f"{requests_path.name} ({custom_id})", mode[1])
                else:
                    to_send.append((custom_id, line))
            if to_send:
                assert sync_out is not None
                self._retry_sync(to_send, done, sync_out)
        if selected:
            raise ReconciliationError(
                f"round {self.round_index}, shard {shard.index}: {len(selected)} ids of its outcome files "
                f"are not in {requests_path} (for example {next(iter(selected))}); the shard's files do not "
                "belong together, rerun its fanout"
            )

    def _select(self, shard_index: int) -> dict[str, tuple[str, str]]:
        selected: dict[str, tuple[str, str]] = {}
        for outcome, row in iter_unfinished_rows(self.folder, self.round_index, shard_index):
            verdict = self.rule.decide(outcome, row)
            if verdict.decision is Decision.DEAD_LETTER:
                self.dead_letter(row, verdict.reason)
            elif verdict.decision is Decision.HOLD:
                self.tally.held += 1
            else:
                use_sync = self.sync is not None and outcome == "errored"
                selected[row["custom_id"]] = ("sync" if use_sync else "requeue", outcome)
        return selected

    def _earlier_sync_rows(self, shard_index: int) -> dict[str, dict[str, Any]]:
        # A requeue that died after paying for synchronous calls left their rows: reuse, never re-pay.
        path = sync_retry_path(self.folder, self.round_index, shard_index)
        return {row["custom_id"]: row for row in iter_jsonl(path)} if path.exists() else {}

    def _requeue(self, custom_id: str, line: bytes, location: str, outcome: str) -> None:
        allowance = self.allowance
        if allowance is not None and not allowance.admit_round:
            what = f"round {self.round_index + 1} (every requeueable request of round {self.round_index})"
            self._hold_for_budget(custom_id, outcome, allowance.budget.reason(what, allowance.round_cost))
            return
        self.add_request(line, location)
        self.tally.requeued += 1

    def _retry_sync(
        self, requests: list[tuple[str, bytes]], done: dict[str, dict[str, Any]], sync_out: IO[bytes]
    ) -> None:
        """Send a shard's retryable errored requests synchronously (the pool bounds the calls in
        flight); each call is admitted by the budget before any is sent, at the estimate per call."""
        assert self.sync is not None
        allowance = self.allowance
        rows: dict[str, dict[str, Any]] = {}
        to_send: list[tuple[str, Mapping[str, Any]]] = []
        for custom_id, line in requests:
            earlier = done.get(custom_id)
            if earlier is not None:
                rows[custom_id] = earlier
                continue
            if allowance is not None:
                cost = allowance.budget.per_sync_request_usd
                if cost > allowance.sync_left:
                    self._hold_for_budget(
                        custom_id, "errored", allowance.budget.reason("a synchronous retry", cost)
                    )
                    continue
                allowance.sync_left -= cost
            to_send.append((custom_id, orjson.loads(line)["params"]))
        for (custom_id, _), row in zip(to_send, self.sync.retry_many(to_send), strict=True):
            rows[custom_id] = row
            if allowance is not None:
                # the reservation becomes the answer's real cost
                allowance.sync_left += allowance.budget.per_sync_request_usd
                allowance.sync_left -= max(float(row.get("cost_usd") or 0.0), 0.0)
        carried = load_passthrough(self.folder, rows) if rows else None
        for custom_id, line in requests:
            row = rows.get(custom_id)
            if row is None:
                continue  # held by the budget
            row = dict(with_passthrough(row, carried))
            sync_out.write(orjson.dumps(row) + b"\n")
            if row["outcome"] == "succeeded":
                self.tally.sync_succeeded += 1
            elif row["outcome"] == "invalid_output":
                self.tally.sync_invalid_output += 1
            elif row.get("retryable"):
                if row["outcome"] == "fell_back":
                    self.tally.sync_fell_back += 1
                self._requeue(custom_id, line, f"synchronous retry of {custom_id}", "errored")
            else:
                reason = self.rule.decide("errored", row).reason
                self.dead_letter(row, f"on the synchronous retry, {reason}")


def requeue_round(
    folder: RunFolder,
    round_index: int,
    shards: Sequence[ShardDescriptor],
    *,
    rule: RequeueRule | None = None,
    limits: ShardLimits | None = None,
    sync: SyncRetry | None = None,
    budget: RoundBudget | None = None,
) -> RequeueRecord:
    """Build round ``round_index + 1`` from the unfinished requests of round ``round_index``.

    Reads each shard's outcome files and streams its requests file, selecting the original lines by
    custom_id, into the next round's shards (``ShardWriter``, within ``limits``). Writes, in order: the
    next round's shard files, ``round-{r+1}/shards.json``, ``round-r/dead-letter.jsonl`` and, last,
    ``round-r/requeue.json``. When that record already exists the round was requeued before (a task
    retry or a cleared task): it is returned as is and nothing is rewritten, so shards that may have
    been submitted never change.

    :param folder: the run folder.
    :param round_index: the round that was fanned out.
    :param shards: the round's descriptors (the fanout outputs).
    :param rule: the requeue rule (the default requeues canceled requests unless a user cancelled).
    :param limits: count and byte limits of the next round's shards.
    :param sync: retry errored requests synchronously first, when given.
    :param budget: what the run may still spend (see
        :func:`~airflow_claude_batch.batch.budget.round_budget`); ``None``: no budget. A next round that
        does not fit in it is not built, and synchronous retries stop when the next would not fit: their
        requests are listed as pending with the reason (``round-r/budget-held.jsonl``).
    :raises StorageError: a shard's fanout files are missing.
    :raises ReconciliationError: a shard's outcome files name ids its requests file does not hold.
    """
    existing = read_requeue_record(folder, round_index)
    if existing is not None:
        log.info(
            "round %d was requeued before; returning its %d shards", round_index, len(existing.next_shards)
        )
        return existing
    rule = rule or RequeueRule()
    next_round = round_index + 1
    run_uri = shards[0].run_uri if shards else str(folder.root)
    allowance = _allowance(folder, round_index, shards, rule, budget)
    with (
        atomic_writer(folder.round_dead_letter(round_index)) as dead_letter_out,
        atomic_writer(budget_held_path(folder, round_index)) as held_out,
        ShardWriter(folder, next_round, limits) as writer,
    ):
        work = _RoundRequeue(
            folder, round_index, rule, dead_letter_out, writer.add_line, sync, allowance, held_out
        )
        for shard in sorted(shards, key=lambda s: s.index):
            work.shard(shard, folder.shard_requests(round_index, shard.index))
    next_shards = [written.descriptor(run_uri, next_round).to_dict() for written in writer.shards]
    write_json(shard_list_path(folder, next_round), next_shards)
    tally = work.tally
    record = RequeueRecord(
        round=round_index,
        requeued=tally.requeued,
        dead_lettered=tally.dead_lettered,
        held=tally.held,
        sync_succeeded=tally.sync_succeeded,
        sync_invalid_output=tally.sync_invalid_output,
        next_shards=next_shards,
        requeue_canceled=rule.requeue_canceled,
        requeue_user_canceled=rule.requeue_user_canceled,
        retry_errored_sync=sync is not None,
        budget_held=tally.budget_held,
        sync_fell_back=tally.sync_fell_back,
    )
    write_json(requeue_record_path(folder, round_index), record.to_dict())
    log.info(
        "round %d: %d requests requeued into %d shards, %d dead-lettered, %d held as pending, %d answered "
        "synchronously, %d kept back by the budget",
        round_index,
        tally.requeued,
        len(next_shards),
        tally.dead_lettered,
        tally.held,
        tally.sync_succeeded + tally.sync_invalid_output,
        tally.budget_held,
    )
    return record


def _allowance(
    folder: RunFolder,
    round_index: int,
    shards: Sequence[ShardDescriptor],
    rule: RequeueRule,
    budget: RoundBudget | None,
) -> _Allowance | None:
    """Decide, before anything is sent, whether the next round fits in the budget, and what is left for
    synchronous retries once it is reserved. Every requeueable request counts for the round (a
    synchronous retry that fails may still join it), so the run stays within the budget."""
    if budget is None:
        return None
    requeueable = sum(
        1
        for shard in shards
        for outcome, row in iter_unfinished_rows(folder, round_index, shard.index)
        if rule.decide(outcome, row).decision is Decision.REQUEUE
    )
    round_cost = requeueable * budget.per_request_usd
    admit = round_cost <= budget.left_usd
    return _Allowance(budget, admit, round_cost, budget.left_usd - (round_cost if admit else 0.0))
