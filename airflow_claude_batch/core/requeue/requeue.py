"""Which requests of a round go to the next round, which to the dead-letter file, which stay pending.

The requeue of a round applies the rule (:mod:`~airflow_claude_batch.core.requeue.requeue_rule`) to each row
of a shard's ``errored``, ``expired`` and ``canceled`` files, and builds the next round's shards from
the original request lines. With ``retry_errored_sync`` the retryable errored requests are first sent
once as synchronous Messages calls at standard prices (:mod:`~airflow_claude_batch.core.requeue.sync_retry`);
those that still fail with a retryable error go to the next round. The budget, when set, decides what
may still be sent; the rest is listed as pending with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

import orjson

from airflow_claude_batch.core.money.money_meter import run_prices
from airflow_claude_batch.core.requests.passthrough import load_passthrough, with_passthrough
from airflow_claude_batch.core.requests.request_lines import iter_request_lines
from airflow_claude_batch.core.requests.sharding import ShardLimits, ShardWriter
from airflow_claude_batch.core.requeue.requeue_record import (
    REQUEUE_SCHEMA_VERSION,
    RequeueRecord,
    read_requeue_record,
)
from airflow_claude_batch.core.requeue.requeue_rule import (
    Decision,
    RequeueRule,
    dead_letter_row,
    pending_row,
)
from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
from airflow_claude_batch.core.run.cancel_record import is_canceled
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import UNFINISHED_OUTCOMES, Outcome, PendingReason
from airflow_claude_batch.core.run.round_files import (
    copy_rows,
)
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer, iter_jsonl, write_json
from airflow_claude_batch.exceptions import ReconciliationError, StorageError

if TYPE_CHECKING:
    from airflow_claude_batch.core.money.budget import RoundBudget

log = logging.getLogger(__name__)


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


@dataclass
class _Tally:
    requeued: int = 0
    dead_lettered: int = 0
    held: int = 0
    sync_succeeded: int = 0
    sync_invalid_output: int = 0
    budget_held: int = 0
    sync_fell_back: int = 0
    sync_unknown: int = 0


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
                    atomic_writer(self.folder.shard_sync_retry(self.round_index, shard.index))
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
                use_sync = self.sync is not None and outcome == Outcome.ERRORED
                selected[row["custom_id"]] = ("sync" if use_sync else "requeue", outcome)
        return selected

    def _earlier_sync_rows(self, shard_index: int) -> dict[str, dict[str, Any]]:
        # A requeue that died after paying for synchronous calls left their rows: reuse, never re-pay.
        path = self.folder.shard_sync_retry(self.round_index, shard_index)
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
        canceled_now = is_canceled(self.folder)  # a cancel that came while the round was requeued
        for custom_id, line in requests:
            earlier = done.get(custom_id)
            if earlier is not None:
                rows[custom_id] = earlier
                continue
            if canceled_now:
                self._hold_for_budget(custom_id, Outcome.ERRORED, PendingReason.CANCELED)
                continue
            if allowance is not None:
                cost = allowance.budget.per_sync_request_usd
                if cost > allowance.sync_left:
                    self._hold_for_budget(
                        custom_id, Outcome.ERRORED, allowance.budget.reason("a synchronous retry", cost)
                    )
                    continue
                allowance.sync_left -= cost
            to_send.append((custom_id, orjson.loads(line)["params"]))
        for (custom_id, _), row in zip(to_send, self.sync.retry_many(to_send), strict=True):
            rows[custom_id] = row
            if allowance is not None:
                # the reservation becomes the answer's real cost (an unknown outcome: its upper cost)
                allowance.sync_left += allowance.budget.per_sync_request_usd
                spent = (
                    row.get("cost_usd") if row["outcome"] != Outcome.UNKNOWN else row.get("cost_usd_upper")
                )
                allowance.sync_left -= max(float(spent or 0.0), 0.0)
        carried = load_passthrough(self.folder, rows) if rows else None
        for custom_id, line in requests:
            row = rows.get(custom_id)
            if row is None:
                continue  # held by the budget
            row = dict(with_passthrough(row, carried))
            sync_out.write(orjson.dumps(row) + b"\n")
            if row["outcome"] == Outcome.SUCCEEDED:
                self.tally.sync_succeeded += 1
            elif row["outcome"] == Outcome.INVALID_OUTPUT:
                self.tally.sync_invalid_output += 1
            elif row["outcome"] == Outcome.UNKNOWN:
                # possibly answered and billed: pending (sync_outcome_unknown), never sent again
                self.tally.sync_unknown += 1
            elif row["outcome"] == Outcome.REFUSED:
                pass  # final, like an answer: the ledger counts it as refused, never requeued
            elif row.get("retryable"):
                if row["outcome"] == Outcome.FELL_BACK:
                    self.tally.sync_fell_back += 1
                self._requeue(custom_id, line, f"synchronous retry of {custom_id}", Outcome.ERRORED)
            else:
                reason = self.rule.decide(Outcome.ERRORED, row).reason
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
    been submitted never change; only shards added to the round since (``add_new`` after late data)
    are requeued then, into shards added after the next round's existing ones, and the record grows.

    When the run was canceled on purpose (``cancel.json``), nothing is sent: no synchronous retry, no
    next round; what would have been requeued is held as pending with the reason ``canceled``.

    :param folder: the run folder.
    :param round_index: the round that was fanned out.
    :param shards: the round's descriptors (the fanout outputs).
    :param rule: the requeue rule (the default requeues canceled requests unless a user cancelled).
    :param limits: count and byte limits of the next round's shards.
    :param sync: retry errored requests synchronously first, when given.
    :param budget: what the run may still spend (see
        :func:`~airflow_claude_batch.core.report.round_budget.round_budget`); ``None``: no budget. A next
        round that
        does not fit in it is not built, and synchronous retries stop when the next would not fit: their
        requests are listed as pending with the reason (``round-r/budget-held.jsonl``).
    :raises StorageError: a shard's fanout files are missing.
    :raises ReconciliationError: a shard's outcome files name ids its requests file does not hold.
    """
    existing = read_requeue_record(folder, round_index)
    todo = list(shards) if existing is None else existing.unread(shards)
    if existing is not None and not todo:
        log.info(
            "round %d was requeued before; returning its %d shards", round_index, len(existing.next_shards)
        )
        return existing
    if existing is not None:
        log.info(
            "round %d was requeued before; %d shard(s) added to it since (%s) are requeued now",
            round_index,
            len(todo),
            ", ".join(str(shard.index) for shard in todo),
        )
    canceled = is_canceled(folder)
    rule = replace(rule or RequeueRule(), run_canceled=canceled)
    if canceled:
        log.warning("the run was canceled on purpose: nothing is requeued or retried synchronously")
        sync, budget = None, None
    if sync is not None:  # synchronous answers are priced with the run's frozen prices, as its rows
        sync = dataclasses.replace(sync, prices=run_prices(folder, sync.prices))
    next_round = round_index + 1
    run_uri = shards[0].run_uri if shards else str(folder.root)
    allowance = _allowance(folder, round_index, todo, rule, budget)
    earlier_next = list(existing.next_shards) if existing is not None else []
    with (
        atomic_writer(folder.round_dead_letter(round_index)) as dead_letter_out,
        atomic_writer(folder.budget_held(round_index)) as held_out,
        ShardWriter(folder, next_round, limits, first_index=len(earlier_next)) as writer,
    ):
        if existing is not None:  # the rows the earlier requeue wrote, as many as it counted
            copy_rows(folder.round_dead_letter(round_index), existing.dead_lettered, dead_letter_out)
            copy_rows(folder.budget_held(round_index), existing.budget_held, held_out)
        work = _RoundRequeue(
            folder, round_index, rule, dead_letter_out, writer.add_line, sync, allowance, held_out
        )
        for shard in sorted(todo, key=lambda s: s.index):
            work.shard(shard, folder.shard_requests(round_index, shard.index))
    next_shards = [*earlier_next, *(w.descriptor(run_uri, next_round).to_dict() for w in writer.shards)]
    write_json(folder.shard_list(next_round), next_shards)
    record = _record(existing, round_index, work.tally, rule, sync is not None, todo, next_shards)
    write_json(folder.requeue_record(round_index), record.to_dict())
    tally = work.tally
    log.info(
        "round %d: %d requests requeued into %d shards, %d dead-lettered, %d held as pending, %d answered "
        "synchronously, %d of unknown synchronous outcome, %d kept back by the budget",
        round_index,
        tally.requeued,
        len(next_shards) - len(earlier_next),
        tally.dead_lettered,
        tally.held,
        tally.sync_succeeded + tally.sync_invalid_output,
        tally.sync_unknown,
        tally.budget_held,
    )
    return record


def _record(
    existing: RequeueRecord | None,
    round_index: int,
    tally: _Tally,
    rule: RequeueRule,
    retried_sync: bool,
    read: Sequence[ShardDescriptor],
    next_shards: list[dict[str, Any]],
) -> RequeueRecord:
    """This requeue's record, added to the earlier one of the round when there is one."""
    before = existing or RequeueRecord(round=round_index, requeued=0, dead_lettered=0, held=0, shards_read=[])
    indexes = [shard.index for shard in read]
    return replace(
        before,
        requeued=before.requeued + tally.requeued,
        dead_lettered=before.dead_lettered + tally.dead_lettered,
        held=before.held + tally.held,
        sync_succeeded=before.sync_succeeded + tally.sync_succeeded,
        sync_invalid_output=before.sync_invalid_output + tally.sync_invalid_output,
        budget_held=before.budget_held + tally.budget_held,
        sync_fell_back=before.sync_fell_back + tally.sync_fell_back,
        sync_unknown=before.sync_unknown + tally.sync_unknown,
        next_shards=next_shards,
        requeue_canceled=rule.requeue_canceled,
        requeue_user_canceled=rule.requeue_user_canceled,
        retry_errored_sync=before.retry_errored_sync or retried_sync,
        shards_read=sorted({*(before.shards_read or []), *indexes}),
        canceled_shards=sorted({*before.canceled_shards, *(indexes if rule.run_canceled else [])}),
        schema_version=REQUEUE_SCHEMA_VERSION,
    )


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
