"""The run's ledger: ``manifest.json`` with counts, batches, tokens and money, from the run folder's files.

The manifest is built by scanning the files of every round, one line at a time (never from XCom): the
shard lists (``round-r/shards.json``), the submit states (batch ids), the outcome files, the requeue
records and dead-letter files, and the synchronous retries. While scanning, the run's
``dead-letter.jsonl`` and ``pending.jsonl`` are written.

Every input record ends in exactly one disposition: ``succeeded`` (answered by a batch, a synchronous
retry, or the answer store: ``reused.jsonl``), ``invalid_output`` (a billed answer
the parser or schema rejected), ``refused`` (the model declined: ``stop_reason: refusal``),
``dead_lettered``, ``pending`` (still requeueable, or held, after the last round) or ``rejected`` (set
aside by the build, ``rejected.jsonl``, never sent). The manifest says whether these add up to the
input count (``reconciled``) and, if not, why (``notes``).

Money is recomputed from each answer's usage with the prices the build froze (see
:mod:`~airflow_claude_batch.core.money.run_totals`); the manifest's shape is in
:mod:`~airflow_claude_batch.core.report.manifest`, the reading of one round in
:mod:`~airflow_claude_batch.core.report.round_scan`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import IO, Any

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.run_totals import ModelTotals, run_money, run_prices
from airflow_claude_batch.core.report.manifest import ESTIMATE_FIELDS, RUN_FILES, Manifest, RoundLedger
from airflow_claude_batch.core.report.round_scan import SAMPLE_ROWS, RoundScan, RowEmitter, RunScanner
from airflow_claude_batch.core.requeue.requeue_record import read_requeue_record
from airflow_claude_batch.core.requeue.requeue_rule import RequeueRule
from airflow_claude_batch.core.run.cancel_record import read_cancel
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES, Disposition
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.storage import atomic_writer, iter_jsonl, read_json, write_json


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
    emitter = RowEmitter(dead_letter_out, pending_out)
    cancel = read_cancel(folder)
    scanner = RunScanner(folder, emitter, canceled=cancel is not None)
    scans: list[RoundScan] = []
    rule = RequeueRule()
    shards = read_shard_list(folder, 0)
    if shards is None:
        scanner.warnings.append(_no_shards_reason(folder))
    for round_index in range(max_rounds):
        if shards is None or (round_index > 0 and not shards):
            break  # an empty requeue round was never run: it is not a round of the run
        record = read_requeue_record(folder, round_index)
        # after a cancel, the last round's requeueable requests are held (reason "canceled")
        rule = (
            record.rule if record is not None else dataclasses.replace(rule, run_canceled=cancel is not None)
        )
        next_shards = read_shard_list(folder, round_index + 1) if record is not None else None
        next_requests = sum(s.request_count for s in next_shards) if next_shards is not None else None
        scan = RoundScan(round_index, shards, record, ModelTotals(prices), ModelTotals(prices))
        scanner.scan_round(scan, rule, next_requests)
        scans.append(scan)
        shards = next_shards
    manifest = _build_manifest(folder, prices, max_rounds, scans, scanner.notes, scanner.warnings)
    if cancel is not None:
        manifest = dataclasses.replace(manifest, canceled=cancel.canceled_at)
    return manifest, {**emitter.samples, Disposition.REJECTED.value: _rejected_sample(folder)}


def _rejected_sample(folder: RunFolder) -> list[dict[str, Any]]:
    """The first rows of the run's ``rejected.jsonl`` (none when the build rejected nothing)."""
    if not folder.rejected.exists():
        return []
    return list(itertools.islice(iter_jsonl(folder.rejected), SAMPLE_ROWS))


def is_dry_run(folder: RunFolder) -> bool:
    """Whether the run's build only validated and estimated (its ``estimate.json`` says ``dry_run``)."""
    estimate = read_json(folder.estimate)
    return isinstance(estimate, dict) and bool(estimate.get("dry_run"))


def _no_shards_reason(folder: RunFolder) -> str:
    if is_dry_run(folder):
        return "a dry run: the records were validated and estimated, and nothing was submitted"
    return f"{folder.shard_list(0)} does not exist: the build did not finish, nothing was submitted"


def _rejected_records(folder: RunFolder) -> int:
    """Records the build set aside (``rejected.jsonl``), as ``estimate.json`` counts them."""
    estimate = read_json(folder.estimate)
    rejected = estimate.get("rejected_records") if isinstance(estimate, dict) else None
    return rejected if isinstance(rejected, int) and not isinstance(rejected, bool) else 0


def _reused(folder: RunFolder) -> tuple[int, float]:
    """Requests the answer store answered, and what they cost when bought, as ``estimate.json`` says."""
    estimate = read_json(folder.estimate)
    estimate = estimate if isinstance(estimate, dict) else {}
    count, saved = estimate.get("reused_records"), estimate.get("reused_saved_usd")
    return (
        count if isinstance(count, int) and not isinstance(count, bool) else 0,
        float(saved) if isinstance(saved, (int, float)) and not isinstance(saved, bool) else 0.0,
    )


def _input_records(folder: RunFolder, scans: list[RoundScan]) -> tuple[int, float | None, float | None]:
    """The records the build read (sent, reused and rejected), and the estimate's upper and expected
    figures."""
    estimate = read_json(folder.estimate)
    estimate = estimate if isinstance(estimate, dict) else {}
    records = estimate.get("records")
    if not isinstance(records, int):
        records = scans[0].requests if scans else 0
    records += _rejected_records(folder) + _reused(folder)[0]
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
    scans: list[RoundScan],
    notes: list[str],
    warnings: list[str],
) -> Manifest:
    records, estimated_upper, estimated_expected = _input_records(folder, scans)
    batch_tokens = ModelTotals.combined(prices, *(scan.batch_tokens for scan in scans))
    sync_tokens = ModelTotals.combined(prices, *(scan.sync_tokens for scan in scans))
    all_tokens = ModelTotals.combined(prices, batch_tokens, sync_tokens)
    reused, saved_usd = _reused(folder)
    dispositions = {
        **{
            answer.value: sum(s.outcomes[answer] + s.sync_retry.get(answer, 0) for s in scans)
            for answer in (Disposition.SUCCEEDED, Disposition.INVALID_OUTPUT, Disposition.REFUSED)
        },
        Disposition.DEAD_LETTERED.value: sum(s.dead_lettered for s in scans),
        Disposition.PENDING.value: sum(s.pending for s in scans),
        Disposition.REJECTED.value: _rejected_records(folder),
    }
    dispositions[Disposition.SUCCEEDED.value] += reused
    notes = list(notes)
    if sum(dispositions.values()) != records:
        notes.append(
            f"the dispositions add up to {sum(dispositions.values())}, not to the {records} input records"
        )
    outcomes = dict.fromkeys(ROW_OUTCOMES, 0)
    for scan in scans:
        for outcome, count in scan.outcomes.items():
            outcomes[outcome] += count
    money = run_money(
        batch_tokens,
        sync_tokens,
        prices,
        estimated_upper=estimated_upper,
        estimated_expected=estimated_expected,
        sync_unknown_usd=sum(scan.sync_unknown_usd for scan in scans),
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
        reused={"requests": reused, "saved_usd": saved_usd},
    )


def _round_ledger(scan: RoundScan, prices: PriceTable) -> RoundLedger:
    tokens = ModelTotals.combined(prices, scan.batch_tokens, scan.sync_tokens)
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
        sync_retry_unknown_usd=round(scan.sync_unknown_usd, 6),
    )


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


def accounting_failure(manifest: Manifest) -> dict[str, Any] | None:
    """Why a run whose dispositions do not add up to its input records fails, or ``None`` when they do.

    A record in no disposition is a record lost: the report fails its task (after writing the manifest
    with this ``failure``) instead of announcing the run's data.
    """
    accounted = sum(manifest.dispositions.values())
    if accounted == manifest.input_records:
        return None
    detail = "; ".join(manifest.notes) or "no note explains it"
    return {
        "reason": (
            f"records are not accounted for: the dispositions add up to {accounted}, not to the "
            f"{manifest.input_records} input records ({detail}). Look at the rounds' files named in the "
            "notes, then clear the run's requeue and report tasks"
        ),
        "bound": "accounting",
        "accounted": accounted,
        "input_records": manifest.input_records,
    }
