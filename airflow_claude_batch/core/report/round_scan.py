"""Reading one round of a run folder for the ledger: outcome rows, decisions, synchronous retries.

A round is read one shard and one line at a time (never from XCom); memory holds counters and small
samples, never a file. The unfinished rows of the last round are decided here with the requeue rule
(nothing is requeued any more), and every row that ends dead-lettered or pending is handed to the
run's ``dead-letter.jsonl`` and ``pending.jsonl``. What does not add up becomes a note, what adds up but
needs a look a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from airflow_claude_batch.core.money.money_meter import PRICING_PARAMS
from airflow_claude_batch.core.money.run_totals import ModelTotals
from airflow_claude_batch.core.requests.request_lines import iter_request_lines
from airflow_claude_batch.core.requeue.requeue_record import RequeueRecord
from airflow_claude_batch.core.requeue.requeue_rule import (
    Decision,
    RequeueRule,
    dead_letter_row,
    pending_row,
)
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import (
    BILLED_OUTCOMES,
    LATER_OUTCOMES,
    ROW_OUTCOMES,
    UNFINISHED_OUTCOMES,
    Disposition,
    Outcome,
    PendingReason,
)
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, iter_jsonl, read_json
from airflow_claude_batch.core.submit.state import read_state

#: Rows of the dead-letter and pending files kept in the manifest's scan for the report page.
SAMPLE_ROWS = 50


@dataclass
class RoundScan:
    """What the scan of one round counted: rows per outcome, decisions, tokens and batches."""

    round: int
    shards: list[ShardDescriptor]
    record: RequeueRecord | None
    batch_tokens: ModelTotals
    sync_tokens: ModelTotals
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_OUTCOMES, 0))
    sync_retry: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (*BILLED_OUTCOMES, Outcome.ERRORED.value, Outcome.UNKNOWN.value), 0
        )
    )
    batch_ids: list[str] = field(default_factory=list)
    requeued: int = 0
    dead_lettered: int = 0
    held: int = 0  # pending by the rule (and, in the last round, what would have been requeued)
    no_results: int = 0  # pending because their shard's fanout did not finish
    unfinished_shards: int = 0
    sync_unknown_usd: float = 0.0  # synchronous retries of unknown outcome, at their upper cost

    @property
    def requests(self) -> int:
        return sum(shard.request_count for shard in self.shards)

    @property
    def pending(self) -> int:
        return self.held + self.no_results

    @property
    def unfinished_rows(self) -> int:
        return sum(self.outcomes[outcome] for outcome in UNFINISHED_OUTCOMES)

    @property
    def answered_sync(self) -> int:
        return sum(self.sync_retry.get(outcome, 0) for outcome in BILLED_OUTCOMES)


class RowEmitter:
    """Writes rows to the run's dead-letter and pending files and keeps a sample of each."""

    def __init__(self, dead_letter_out: IO[bytes] | None, pending_out: IO[bytes] | None) -> None:
        self._outs = {"dead_letter": dead_letter_out, Disposition.PENDING.value: pending_out}
        self.samples: dict[str, list[dict[str, Any]]] = {"dead_letter": [], Disposition.PENDING.value: []}

    def emit(self, kind: str, row: dict[str, Any]) -> None:
        out = self._outs[kind]
        if out is not None:
            out.write(orjson.dumps(row) + b"\n")
        if len(self.samples[kind]) < SAMPLE_ROWS:
            self.samples[kind].append(row)


def _fanout_finished(folder: RunFolder, round_index: int, shard_index: int) -> bool:
    return all(
        folder.shard_outcome(round_index, shard_index, outcome).exists()
        for outcome in ROW_OUTCOMES
        if outcome not in LATER_OUTCOMES
    )


class RunScanner:
    """Reads one round at a time; memory holds counters and small samples, never a file."""

    def __init__(self, folder: RunFolder, emitter: RowEmitter, *, canceled: bool = False) -> None:
        self.folder = folder
        self.emitter = emitter
        self.canceled = canceled  # the run was canceled on purpose (its cancel.json)
        self.notes: list[str] = []  # what does not add up
        self.warnings: list[str] = []  # what adds up but needs a look

    def scan_round(self, scan: RoundScan, rule: RequeueRule, next_requests: int | None) -> None:
        for shard in scan.shards:
            self._batch_id(scan, shard)
            if not _fanout_finished(self.folder, scan.round, shard.index):
                self._unfinished_shard(scan, shard)
                continue
            self._answers(scan, shard.index)
            self._unfinished(scan, shard.index, scan.record.rule_for(shard.index) if scan.record else rule)
            if scan.record is not None:
                self._sync_retries(scan, shard.index)
        self._check_rows(scan)
        if scan.record is not None:
            self._round_dead_letters(scan)
            self._budget_held(scan)
            scan.requeued = scan.record.requeued
            self._check_requeue(scan, next_requests)

    def _batch_id(self, scan: RoundScan, shard: ShardDescriptor) -> None:
        state = read_state(self.folder.shard_state(scan.round, shard.index))
        batch_id = state.batch_id if state is not None else shard.batch_id
        if batch_id:
            scan.batch_ids.append(batch_id)

    def _unfinished_shard(self, scan: RoundScan, shard: ShardDescriptor) -> None:
        scan.unfinished_shards += 1
        state = read_state(self.folder.shard_state(scan.round, shard.index))
        if self.canceled and (state is None or state.batch_id is None):
            last_outcome, reason = Outcome.NOT_SUBMITTED, PendingReason.CANCELED
            detail = (
                f"round {scan.round}, shard {shard.index}: the run was canceled before its batch was created"
            )
        else:
            last_outcome, reason = "no_results", None
            detail = f"round {scan.round}, shard {shard.index} has no results: its fanout did not finish"
        self.warnings.append(f"{detail}; its {shard.request_count} requests are listed as pending")
        for custom_id, _ in iter_request_lines(self.folder.shard_requests(scan.round, shard.index)):
            row = pending_row(custom_id, scan.round, last_outcome, reason or detail)
            self.emitter.emit(Disposition.PENDING, {**row, "detail": detail} if reason else row)
            scan.no_results += 1

    def _answers(self, scan: RoundScan, shard_index: int) -> None:
        for outcome in BILLED_OUTCOMES:
            path = self.folder.shard_outcome(scan.round, shard_index, outcome)
            if outcome in LATER_OUTCOMES and not path.exists():
                continue  # fanned out before this outcome had a file
            for row in iter_jsonl(path):
                scan.outcomes[outcome] += 1
                scan.batch_tokens.add(row.get("model") or "", row.get("usage"), row.get(PRICING_PARAMS))
        # The batch's marker request is no record, but it was billed: its tokens count in the money.
        marker = read_json(self.folder.shard_marker(scan.round, shard_index))
        if isinstance(marker, dict) and marker.get("usage"):
            scan.batch_tokens.add(marker.get("model") or "", marker.get("usage"))

    def _unfinished(self, scan: RoundScan, shard_index: int, rule: RequeueRule) -> None:
        last_round = scan.record is None
        for outcome in UNFINISHED_OUTCOMES:
            for row in iter_jsonl(self.folder.shard_outcome(scan.round, shard_index, outcome)):
                scan.outcomes[outcome] += 1
                if row.get("usage"):  # a billed message that is no answer (model_context_window_exceeded)
                    scan.batch_tokens.add(row.get("model") or "", row.get("usage"), row.get(PRICING_PARAMS))
                verdict = rule.decide(outcome, row)
                if verdict.decision is Decision.HOLD:
                    self._hold(scan, row["custom_id"], outcome, verdict.reason)
                elif last_round and verdict.decision is Decision.REQUEUE:
                    reason = f"{verdict.reason}; still unfinished after the last round"
                    self._hold(scan, row["custom_id"], outcome, reason)
                elif last_round:
                    self.emitter.emit("dead_letter", dead_letter_row(row, scan.round, verdict.reason))
                    scan.dead_lettered += 1
                # else the round's requeue decided it: requeued, retried, or in its dead-letter file

    def _hold(self, scan: RoundScan, custom_id: str, outcome: str, reason: str) -> None:
        self.emitter.emit(Disposition.PENDING, pending_row(custom_id, scan.round, outcome, reason))
        scan.held += 1

    def _sync_retries(self, scan: RoundScan, shard_index: int) -> None:
        path = self.folder.shard_sync_retry(scan.round, shard_index)
        if not path.exists():
            return
        for row in iter_jsonl(path):
            outcome = row.get("outcome", Outcome.ERRORED)
            scan.sync_retry[outcome] = scan.sync_retry.get(outcome, 0) + 1
            if row.get("usage"):  # every billed synchronous message, answer or not
                scan.sync_tokens.add(row.get("model") or "", row.get("usage"), row.get(PRICING_PARAMS))
            elif outcome == Outcome.UNKNOWN:
                # possibly processed and billed: pending, never resent, counted at its upper cost
                scan.sync_unknown_usd += float(row.get("cost_usd_upper") or 0.0)
                detail = f"the synchronous retry's outcome is unknown ({row.get('message')})"
                pending = pending_row(
                    row["custom_id"], scan.round, Outcome.ERRORED, PendingReason.SYNC_OUTCOME_UNKNOWN
                )
                self.emitter.emit(Disposition.PENDING, {**pending, "detail": detail})
                scan.held += 1

    def _budget_held(self, scan: RoundScan) -> None:
        scan.held += self._emit_file(self.folder.budget_held(scan.round), Disposition.PENDING)

    def _round_dead_letters(self, scan: RoundScan) -> None:
        scan.dead_lettered += self._emit_file(self.folder.round_dead_letter(scan.round), "dead_letter")

    def _emit_file(self, path: StoragePath, kind: str) -> int:
        """Hand every row of ``path`` (when it exists) to the run's ``kind`` file; return how many."""
        if not path.exists():
            return 0
        count = 0
        for row in iter_jsonl(path):
            self.emitter.emit(kind, row)
            count += 1
        return count

    def _check_rows(self, scan: RoundScan) -> None:
        rows = sum(scan.outcomes.values())
        if rows + scan.no_results != scan.requests:
            self.notes.append(
                f"round {scan.round}: {scan.requests} requests but {rows} outcome rows"
                f"{f' and {scan.no_results} without results' if scan.no_results else ''}"
            )

    def _check_requeue(self, scan: RoundScan, next_requests: int | None) -> None:
        decided = scan.requeued + scan.dead_lettered + scan.held + scan.answered_sync
        if decided != scan.unfinished_rows:
            self.notes.append(
                f"round {scan.round}: {scan.unfinished_rows} unfinished requests, but {decided} are "
                f"accounted for (requeued {scan.requeued}, dead-lettered {scan.dead_lettered}, "
                f"held {scan.held}, answered synchronously {scan.answered_sync})"
            )
        if next_requests is None and scan.requeued:
            self.notes.append(
                f"round {scan.round} requeued {scan.requeued} requests but round {scan.round + 1} "
                "has no shard list"
            )
        elif next_requests is not None and next_requests != scan.requeued:
            self.notes.append(
                f"round {scan.round} requeued {scan.requeued} requests but round {scan.round + 1} holds "
                f"{next_requests}"
            )
