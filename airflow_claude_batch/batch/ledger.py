"""The run's ledger: ``manifest.json`` with counts, batches, tokens and money, from the run folder's files.

The manifest is built by scanning the files of every round, one line at a time (never from XCom): the
shard lists (``round-r/shards.json``), the submit states (batch ids), the outcome files, the requeue
records and dead-letter files, and the synchronous retries. While scanning, the run's
``dead-letter.jsonl`` and ``pending.jsonl`` are written.

Every input record ends in exactly one disposition: ``succeeded``, ``invalid_output`` (a billed answer
the parser or schema rejected), ``dead_lettered`` or ``pending`` (still requeueable, or held, after the
last round). The manifest says whether these add up to the input count (``reconciled``) and, if not,
why (``notes``).

Money is recomputed from each answer's usage with the prices the build froze into ``estimate.json``
(the prices loaded at report time only when the run has none, such as a run built before prices were
frozen), cache writes and reads at their own
rates: ``batch_usd`` (batch answers at batch prices), ``sync_retry_usd`` (synchronous retries at standard
prices), ``actual_usd`` (their sum), ``synchronous_equivalent_usd`` (every answer at standard prices:
what the same work would have cost without batches) and ``savings_usd``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import orjson

from airflow_claude_batch.batch.pricing import PriceTable, TokenTotals
from airflow_claude_batch.batch.requeue import (
    UNFINISHED_OUTCOMES,
    Decision,
    RequeueRecord,
    RequeueRule,
    budget_held_path,
    dead_letter_row,
    pending_row,
    read_requeue_record,
    shard_list_path,
    sync_retry_path,
)
from airflow_claude_batch.batch.routing import ROW_OUTCOMES, iter_request_lines
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.shards import ShardDescriptor
from airflow_claude_batch.batch.state import read_state
from airflow_claude_batch.batch.storage import StoragePath, atomic_writer, iter_jsonl, read_json, write_json

MANIFEST_SCHEMA_VERSION = 2
#: The parts of ``estimate.json`` the manifest carries (the history of later runs reads them).
ESTIMATE_FIELDS = (
    "built_at",
    "records",
    "input_tokens",
    "method",
    "budget_basis",
    "max_cost_usd",
    "basis",
    "inputs",
    "gap_usd",
    "warnings",
    "estimated_cost_usd_expected",
    "estimated_cost_usd_upper",
)
DISPOSITIONS = ("succeeded", "invalid_output", "dead_lettered", "pending")
#: Rows of the dead-letter and pending files kept in the manifest's scan for the report page.
SAMPLE_ROWS = 50


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """US dollars of a run.

    :param estimated_upper_usd: the build's upper-bound estimate (``None`` when unknown).
    :param estimated_expected_usd: the build's expected estimate (``None`` when unknown).
    :param batch_usd: batch answers at batch prices.
    :param sync_retry_usd: synchronous retries at standard prices.
    :param actual_usd: ``batch_usd + sync_retry_usd``.
    :param synchronous_equivalent_usd: every answer at standard prices.
    :param savings_usd: ``synchronous_equivalent_usd - actual_usd``.
    :param savings_pct: savings as a percentage of the synchronous equivalent (``None`` when it is 0).
    """

    estimated_upper_usd: float | None
    estimated_expected_usd: float | None
    batch_usd: float
    sync_retry_usd: float
    actual_usd: float
    synchronous_equivalent_usd: float
    savings_usd: float
    savings_pct: float | None


@dataclass(frozen=True)
class RoundLedger:
    """One round of a run.

    :param round: the round's number (0 first).
    :param shards: shards in the round.
    :param requests: requests in the round.
    :param batch_ids: the round's batches (as the submit states recorded them).
    :param outcomes: rows per outcome file, summed over the shards.
    :param requeued: requests sent on to the next round.
    :param dead_lettered: requests that ended dead-lettered in this round.
    :param pending: requests that ended pending in this round.
    :param sync_retry: synchronous retries by outcome.
    :param tokens: token totals of the round's answers (batch and synchronous).
    :param batch_usd: the round's batch answers at batch prices.
    :param sync_retry_usd: the round's synchronous retries at standard prices.
    :param requeue_ran: whether the round's requeue ran (not for the last round).
    :param unfinished_shards: shards whose fanout had not written its files (their requests are pending).
    """

    round: int
    shards: int
    requests: int
    batch_ids: list[str]
    outcomes: dict[str, int]
    requeued: int
    dead_lettered: int
    pending: int
    sync_retry: dict[str, int]
    tokens: dict[str, int]
    batch_usd: float
    sync_retry_usd: float
    requeue_ran: bool
    unfinished_shards: int


@dataclass(frozen=True)
class Manifest:
    """What a run did and cost, as stored in ``manifest.json``.

    :param run_uri: the run folder.
    :param input_records: records the build read.
    :param max_rounds: rounds allowed in all.
    :param rounds: one entry per round that exists.
    :param outcomes: rows per outcome file over all rounds (a requeued request counts once per round).
    :param dispositions: final disposition counts (``succeeded``, ``invalid_output``, ``dead_lettered``,
        ``pending``).
    :param reconciled: whether the dispositions add up to ``input_records`` and every round balances.
    :param notes: what does not add up, when ``reconciled`` is false.
    :param warnings: what adds up but needs a look (a shard without results, a missing shard list).
    :param batch_ids: every batch of the run.
    :param tokens: token totals by kind over all answers.
    :param tokens_by_model: the same per model.
    :param money: estimate, actual, synchronous equivalent and savings.
    :param files: the run's files, relative to the run folder.
    :param price_sources: the price files the money was computed with.
    :param cache_hit_rate: cache reads over cache reads and writes, in tokens (``None``: nothing cached).
    :param estimate: the build's estimate (its figures, basis and inputs; see ``estimate.json``).
    :param prices: the price table the money was computed with (frozen by the build).
    :param pipeline: the pipeline's identity (``dag_id``, ``group_id``), when known.
    """

    run_uri: str
    input_records: int
    max_rounds: int
    rounds: list[RoundLedger]
    outcomes: dict[str, int]
    dispositions: dict[str, int]
    reconciled: bool
    notes: list[str]
    warnings: list[str]
    batch_ids: list[str]
    tokens: dict[str, int]
    tokens_by_model: dict[str, dict[str, int]]
    money: Money
    files: dict[str, str]
    price_sources: list[str]
    cache_hit_rate: float | None = None
    estimate: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """A small dict for XCom: counts, batches, rounds, money and the files."""
        return {
            "run_uri": self.run_uri,
            "input_records": self.input_records,
            "dispositions": dict(self.dispositions),
            "reconciled": self.reconciled,
            "rounds": len(self.rounds),
            "batches": len(self.batch_ids),
            "estimated_cost_usd": self.money.estimated_expected_usd,
            "estimated_cost_usd_upper": self.money.estimated_upper_usd,
            "cache_hit_rate": self.cache_hit_rate,
            "actual_cost_usd": self.money.actual_usd,
            "synchronous_equivalent_usd": self.money.synchronous_equivalent_usd,
            "savings_usd": self.money.savings_usd,
            "money": asdict(self.money),
            "files": dict(self.files),
        }


# --------------------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------------------


class _ModelTotals:
    """Token totals per model and per rate (prompt-length tier, multipliers), priced at the end (one
    price lookup per rate, not per row)."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self.by_model: dict[str, TokenTotals] = {}
        self.by_rate: dict[tuple[str, int, float], TokenTotals] = {}

    def add(self, model: str, usage: Mapping[str, Any] | None) -> None:
        totals = TokenTotals.from_usage(usage)
        _add_to(self.by_model, model, totals)
        _add_to(self.by_rate, self.prices.rate_key(model, usage), totals)

    def merge(self, other: _ModelTotals) -> None:
        for model, totals in other.by_model.items():
            _add_to(self.by_model, model, totals)
        for key, totals in other.by_rate.items():
            _add_to(self.by_rate, key, totals)

    def total(self) -> TokenTotals:
        total = TokenTotals()
        for totals in self.by_model.values():
            total = total + totals
        return total

    def cost(self, prices: PriceTable, *, batch: bool) -> float:
        total = 0.0
        for (model, tier, factor), totals in self.by_rate.items():
            tier_tokens = (
                None if tier == 0 else prices.price(model).prompt_tiers[tier - 1].above_input_tokens + 1
            )
            total += prices.cost_of_totals(
                model, totals, batch=batch, prompt_tokens=tier_tokens, factor=factor
            )
        return total


def _add_to(table: dict[Any, TokenTotals], key: Any, totals: TokenTotals) -> None:
    previous = table.get(key)
    table[key] = totals if previous is None else previous + totals


@dataclass
class _RoundScan:
    round: int
    shards: list[ShardDescriptor]
    record: RequeueRecord | None
    batch_tokens: _ModelTotals
    sync_tokens: _ModelTotals
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_OUTCOMES, 0))
    sync_retry: dict[str, int] = field(
        default_factory=lambda: {"succeeded": 0, "invalid_output": 0, "errored": 0}
    )
    batch_ids: list[str] = field(default_factory=list)
    requeued: int = 0
    dead_lettered: int = 0
    held: int = 0  # pending by the rule (and, in the last round, what would have been requeued)
    no_results: int = 0  # pending because their shard's fanout did not finish
    unfinished_shards: int = 0

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
        return self.sync_retry["succeeded"] + self.sync_retry["invalid_output"]


class _Emitter:
    """Writes rows to the run's dead-letter and pending files and keeps a sample of each."""

    def __init__(self, dead_letter_out: IO[bytes] | None, pending_out: IO[bytes] | None) -> None:
        self._outs = {"dead_letter": dead_letter_out, "pending": pending_out}
        self.samples: dict[str, list[dict[str, Any]]] = {"dead_letter": [], "pending": []}

    def emit(self, kind: str, row: dict[str, Any]) -> None:
        out = self._outs[kind]
        if out is not None:
            out.write(orjson.dumps(row) + b"\n")
        if len(self.samples[kind]) < SAMPLE_ROWS:
            self.samples[kind].append(row)


def read_shard_list(folder: RunFolder, round_index: int) -> list[ShardDescriptor] | None:
    """Return a round's descriptors from ``round-r/shards.json``; ``None`` when the round does not exist."""
    data = read_json(shard_list_path(folder, round_index))
    if data is None:
        return None
    return [ShardDescriptor.from_dict(item) for item in data]


def _fanout_finished(folder: RunFolder, round_index: int, shard_index: int) -> bool:
    return all(folder.shard_outcome(round_index, shard_index, outcome).exists() for outcome in ROW_OUTCOMES)


class _RunScanner:
    """Reads one round at a time; memory holds counters and small samples, never a file."""

    def __init__(self, folder: RunFolder, emitter: _Emitter) -> None:
        self.folder = folder
        self.emitter = emitter
        self.notes: list[str] = []  # what does not add up
        self.warnings: list[str] = []  # what adds up but needs a look

    def scan_round(self, scan: _RoundScan, rule: RequeueRule, next_requests: int | None) -> None:
        for shard in scan.shards:
            self._batch_id(scan, shard)
            if not _fanout_finished(self.folder, scan.round, shard.index):
                self._unfinished_shard(scan, shard)
                continue
            self._answers(scan, shard.index)
            self._unfinished(scan, shard.index, rule)
            if scan.record is not None:
                self._sync_retries(scan, shard.index)
        self._check_rows(scan)
        if scan.record is not None:
            self._round_dead_letters(scan)
            self._budget_held(scan)
            scan.requeued = scan.record.requeued
            self._check_requeue(scan, next_requests)

    def _batch_id(self, scan: _RoundScan, shard: ShardDescriptor) -> None:
        state = read_state(self.folder.shard_state(scan.round, shard.index))
        batch_id = state.batch_id if state is not None else shard.batch_id
        if batch_id:
            scan.batch_ids.append(batch_id)

    def _unfinished_shard(self, scan: _RoundScan, shard: ShardDescriptor) -> None:
        scan.unfinished_shards += 1
        reason = f"round {scan.round}, shard {shard.index} has no results: its fanout did not finish"
        self.warnings.append(f"{reason}; its {shard.request_count} requests are listed as pending")
        for custom_id, _ in iter_request_lines(self.folder.shard_requests(scan.round, shard.index)):
            self.emitter.emit("pending", pending_row(custom_id, scan.round, "no_results", reason))
            scan.no_results += 1

    def _answers(self, scan: _RoundScan, shard_index: int) -> None:
        for outcome in ("succeeded", "invalid_output"):
            for row in iter_jsonl(self.folder.shard_outcome(scan.round, shard_index, outcome)):
                scan.outcomes[outcome] += 1
                scan.batch_tokens.add(row.get("model") or "", row.get("usage"))
        # The batch's marker request is no record, but it was billed: its tokens count in the money.
        marker = read_json(self.folder.shard_marker(scan.round, shard_index))
        if isinstance(marker, dict) and marker.get("usage"):
            scan.batch_tokens.add(marker.get("model") or "", marker.get("usage"))

    def _unfinished(self, scan: _RoundScan, shard_index: int, rule: RequeueRule) -> None:
        last_round = scan.record is None
        for outcome in UNFINISHED_OUTCOMES:
            for row in iter_jsonl(self.folder.shard_outcome(scan.round, shard_index, outcome)):
                scan.outcomes[outcome] += 1
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

    def _hold(self, scan: _RoundScan, custom_id: str, outcome: str, reason: str) -> None:
        self.emitter.emit("pending", pending_row(custom_id, scan.round, outcome, reason))
        scan.held += 1

    def _sync_retries(self, scan: _RoundScan, shard_index: int) -> None:
        path = sync_retry_path(self.folder, scan.round, shard_index)
        if not path.exists():
            return
        for row in iter_jsonl(path):
            outcome = row.get("outcome", "errored")
            scan.sync_retry[outcome] = scan.sync_retry.get(outcome, 0) + 1
            if outcome in ("succeeded", "invalid_output"):
                scan.sync_tokens.add(row.get("model") or "", row.get("usage"))

    def _budget_held(self, scan: _RoundScan) -> None:
        path = budget_held_path(self.folder, scan.round)
        if not path.exists():
            return
        for row in iter_jsonl(path):
            self.emitter.emit("pending", row)
            scan.held += 1

    def _round_dead_letters(self, scan: _RoundScan) -> None:
        path = self.folder.round_dead_letter(scan.round)
        if not path.exists():
            return
        for row in iter_jsonl(path):
            self.emitter.emit("dead_letter", row)
            scan.dead_lettered += 1

    def _check_rows(self, scan: _RoundScan) -> None:
        rows = sum(scan.outcomes.values())
        if rows + scan.no_results != scan.requests:
            self.notes.append(
                f"round {scan.round}: {scan.requests} requests but {rows} outcome rows"
                f"{f' and {scan.no_results} without results' if scan.no_results else ''}"
            )

    def _check_requeue(self, scan: _RoundScan, next_requests: int | None) -> None:
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


def scan_run(
    folder: RunFolder,
    *,
    prices: PriceTable,
    max_rounds: int,
    dead_letter_out: IO[bytes] | None = None,
    pending_out: IO[bytes] | None = None,
) -> tuple[Manifest, dict[str, list[dict[str, Any]]]]:
    """Read the run folder and return its manifest and samples of its dead-letter and pending rows.

    :param folder: the run folder.
    :param prices: the price table.
    :param max_rounds: rounds allowed in all (rounds beyond it are not read).
    :param dead_letter_out: receives the run's dead-letter rows (the rounds' files, then the last
        round's non-retryable errors), when given.
    :param pending_out: receives the run's pending rows, when given.
    """
    prices = run_prices(folder, prices)
    emitter = _Emitter(dead_letter_out, pending_out)
    scanner = _RunScanner(folder, emitter)
    scans: list[_RoundScan] = []
    rule = RequeueRule()
    shards = read_shard_list(folder, 0)
    if shards is None:
        scanner.warnings.append(_no_shards_reason(folder))
    for round_index in range(max_rounds):
        if shards is None or (round_index > 0 and not shards):
            break  # an empty requeue round was never run: it is not a round of the run
        record = read_requeue_record(folder, round_index)
        rule = record.rule if record is not None else rule
        next_shards = read_shard_list(folder, round_index + 1) if record is not None else None
        next_requests = sum(s.request_count for s in next_shards) if next_shards is not None else None
        scan = _RoundScan(round_index, shards, record, _ModelTotals(prices), _ModelTotals(prices))
        scanner.scan_round(scan, rule, next_requests)
        scans.append(scan)
        shards = next_shards
    manifest = _build_manifest(folder, prices, max_rounds, scans, scanner.notes, scanner.warnings)
    return manifest, emitter.samples


def run_prices(folder: RunFolder, loaded: PriceTable) -> PriceTable:
    """The prices the run's build froze into ``estimate.json``; ``loaded`` when it froze none."""
    estimate = read_json(folder.estimate)
    frozen = estimate.get("prices") if isinstance(estimate, dict) else None
    if not isinstance(frozen, dict) or not frozen.get("models"):
        return loaded
    return PriceTable.from_document(frozen, f"{folder.estimate} (as of {frozen.get('as_of')})")


def is_dry_run(folder: RunFolder) -> bool:
    """Whether the run's build only validated and estimated (its ``estimate.json`` says ``dry_run``)."""
    estimate = read_json(folder.estimate)
    return isinstance(estimate, dict) and bool(estimate.get("dry_run"))


def _no_shards_reason(folder: RunFolder) -> str:
    if is_dry_run(folder):
        return "a dry run: the records were validated and estimated, and nothing was submitted"
    return f"{shard_list_path(folder, 0)} does not exist: the build did not finish, nothing was submitted"


def _input_records(folder: RunFolder, scans: list[_RoundScan]) -> tuple[int, float | None, float | None]:
    estimate = read_json(folder.estimate)
    estimate = estimate if isinstance(estimate, dict) else {}
    records = estimate.get("records")
    if not isinstance(records, int):
        records = scans[0].requests if scans else 0
    upper = estimate.get("estimated_cost_usd_upper")
    expected = estimate.get("estimated_cost_usd_expected")
    return (
        records,
        float(upper) if isinstance(upper, (int, float)) else None,
        float(expected) if isinstance(expected, (int, float)) else None,
    )


def _build_manifest(
    folder: RunFolder,
    prices: PriceTable,
    max_rounds: int,
    scans: list[_RoundScan],
    notes: list[str],
    warnings: list[str],
) -> Manifest:
    records, estimated_upper, estimated_expected = _input_records(folder, scans)
    batch_tokens, sync_tokens, all_tokens = _ModelTotals(prices), _ModelTotals(prices), _ModelTotals(prices)
    for scan in scans:
        batch_tokens.merge(scan.batch_tokens)
        sync_tokens.merge(scan.sync_tokens)
    all_tokens.merge(batch_tokens)
    all_tokens.merge(sync_tokens)
    dispositions = {
        "succeeded": sum(s.outcomes["succeeded"] + s.sync_retry["succeeded"] for s in scans),
        "invalid_output": sum(s.outcomes["invalid_output"] + s.sync_retry["invalid_output"] for s in scans),
        "dead_lettered": sum(s.dead_lettered for s in scans),
        "pending": sum(s.pending for s in scans),
    }
    notes = list(notes)
    if sum(dispositions.values()) != records:
        notes.append(
            f"the dispositions add up to {sum(dispositions.values())}, not to the {records} input records"
        )
    outcomes = dict.fromkeys(ROW_OUTCOMES, 0)
    for scan in scans:
        for outcome, count in scan.outcomes.items():
            outcomes[outcome] += count
    batch_usd = batch_tokens.cost(prices, batch=True)
    sync_usd = sync_tokens.cost(prices, batch=False)
    equivalent = all_tokens.cost(prices, batch=False)
    actual = batch_usd + sync_usd
    money = Money(
        estimated_upper_usd=estimated_upper,
        estimated_expected_usd=estimated_expected,
        batch_usd=round(batch_usd, 6),
        sync_retry_usd=round(sync_usd, 6),
        actual_usd=round(actual, 6),
        synchronous_equivalent_usd=round(equivalent, 6),
        savings_usd=round(equivalent - actual, 6),
        savings_pct=round(100.0 * (equivalent - actual) / equivalent, 2) if equivalent > 0 else None,
    )
    estimate = read_json(folder.estimate)
    estimate = estimate if isinstance(estimate, dict) else {}
    totals = all_tokens.total()
    cached = totals.cache_write_5m + totals.cache_write_1h + totals.cache_read
    return Manifest(
        run_uri=str(folder.root),
        input_records=records,
        max_rounds=max_rounds,
        rounds=[_round_ledger(scan, prices) for scan in scans],
        outcomes=outcomes,
        dispositions=dispositions,
        reconciled=not notes,
        notes=notes,
        warnings=list(warnings),
        batch_ids=[batch_id for scan in scans for batch_id in scan.batch_ids],
        tokens=all_tokens.total().to_dict(),
        tokens_by_model={model: totals.to_dict() for model, totals in sorted(all_tokens.by_model.items())},
        money=money,
        files=dict(RUN_FILES),
        price_sources=list(prices.sources),
        cache_hit_rate=round(totals.cache_read / cached, 4) if cached else None,
        estimate={key: estimate[key] for key in ESTIMATE_FIELDS if key in estimate},
        prices=prices.to_document(),
    )


def _round_ledger(scan: _RoundScan, prices: PriceTable) -> RoundLedger:
    tokens = _ModelTotals(prices)
    tokens.merge(scan.batch_tokens)
    tokens.merge(scan.sync_tokens)
    return RoundLedger(
        round=scan.round,
        shards=len(scan.shards),
        requests=scan.requests,
        batch_ids=list(scan.batch_ids),
        outcomes=dict(scan.outcomes),
        requeued=scan.requeued,
        dead_lettered=scan.dead_lettered,
        pending=scan.pending,
        sync_retry=dict(scan.sync_retry),
        tokens=tokens.total().to_dict(),
        batch_usd=round(scan.batch_tokens.cost(prices, batch=True), 6),
        sync_retry_usd=round(scan.sync_tokens.cost(prices, batch=False), 6),
        requeue_ran=scan.record is not None,
        unfinished_shards=scan.unfinished_shards,
    )


# --------------------------------------------------------------------------------------------------
# The run's files
# --------------------------------------------------------------------------------------------------

RUN_FILES = {
    "manifest": "manifest.json",
    "report": "report.html",
    "dead_letter": "dead-letter.jsonl",
    "pending": "pending.jsonl",
}


def write_ledger(
    folder: RunFolder,
    *,
    prices: PriceTable,
    max_rounds: int,
    extra_files: Mapping[str, str] | None = None,
    extra_fields: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
) -> tuple[Manifest, dict[str, list[dict[str, Any]]]]:
    """Scan the run and write its ``dead-letter.jsonl``, ``pending.jsonl`` and ``manifest.json``.

    Each file is written whole or not at all; a rerun writes the same files again.

    :param folder: the run folder.
    :param prices: the price table.
    :param max_rounds: rounds allowed in all.
    :param extra_files: more files to list in the manifest (``{"output": "s3://..."}``).
    :param extra_fields: more top-level fields of ``manifest.json`` (``None`` values are left out).
    :param pipeline: the pipeline's identity for the manifest (``{"dag_id", "group_id"}``).

    :returns: the manifest and samples of the dead-letter and pending rows (for the report page).
    """
    with atomic_writer(folder.dead_letter) as dead_letter_out, atomic_writer(folder.pending) as pending_out:
        manifest, samples = scan_run(
            folder,
            prices=prices,
            max_rounds=max_rounds,
            dead_letter_out=dead_letter_out,
            pending_out=pending_out,
        )
    if extra_files:
        manifest = dataclasses.replace(manifest, files={**manifest.files, **extra_files})
    if pipeline:
        manifest = dataclasses.replace(manifest, pipeline=dict(pipeline))
    document = manifest.to_dict()
    document.update({key: value for key, value in (extra_fields or {}).items() if value is not None})
    write_json(folder.manifest, document)
    return manifest, samples


def iter_succeeded_rows(folder: RunFolder, max_rounds: int) -> Iterator[dict[str, Any]]:
    """Yield every succeeded row of the run: each round's ``succeeded.jsonl``, then its synchronous
    retries that succeeded."""
    for round_index in range(max_rounds):
        shards = read_shard_list(folder, round_index)
        if shards is None:
            return
        for shard in shards:
            path = folder.shard_outcome(round_index, shard.index, "succeeded")
            if path.exists():
                yield from iter_jsonl(path)
            sync_path = sync_retry_path(folder, round_index, shard.index)
            if sync_path.exists():
                for row in iter_jsonl(sync_path):
                    if row.get("outcome") == "succeeded":
                        yield row


def flat_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the joinable form of a succeeded row: ``custom_id`` plus the parsed fields, or ``text``.

    A parsed value that is not an object is kept under ``parsed``; a parsed field called ``custom_id``
    gives way to the record's id. The record's ``passthrough`` fields come after ``custom_id`` (a parsed
    field of the same name wins).
    """
    parsed = row.get("parsed")
    carried = row.get("passthrough") or {}
    if parsed is None:
        return {"custom_id": row["custom_id"], **carried, "text": row.get("text", "")}
    if isinstance(parsed, Mapping):
        return {**carried, **parsed, "custom_id": row["custom_id"]}
    return {"custom_id": row["custom_id"], **carried, "parsed": parsed}


def write_flat_output(
    folder: RunFolder,
    target: StoragePath,
    *,
    max_rounds: int,
    rows: Callable[[], Iterator[dict[str, Any]]] | None = None,
) -> int:
    """Write one row per succeeded record: JSONL, or CSV when ``target``'s name ends in ``.csv``.

    CSV reads the succeeded rows twice (once for the columns), so memory stays one row; nested values
    are written as JSON text.

    :returns: the number of rows written.
    """
    source = rows or (lambda: iter_succeeded_rows(folder, max_rounds))
    if target.name.lower().endswith(".csv"):
        return _write_csv(target, source)
    count = 0
    with atomic_writer(target) as out:
        for row in source():
            out.write(orjson.dumps(flat_record(row)) + b"\n")
            count += 1
    return count


def _write_csv(target: StoragePath, source: Callable[[], Iterator[dict[str, Any]]]) -> int:
    columns: dict[str, None] = {"custom_id": None}
    for row in source():
        columns.update(dict.fromkeys(flat_record(row)))
    count = 0
    with atomic_writer(target) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in source():
            writer.writerow({key: _csv_cell(value) for key, value in flat_record(row).items()})
            count += 1
        text.flush()
        text.detach()
    return count


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value
