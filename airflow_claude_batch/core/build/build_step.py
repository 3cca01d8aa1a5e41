"""The build step of a run: records → validated shards on storage, a cost estimate, a budget guard.

Order of work, so that nothing is ever half-done in a way a later task could act on:

1. ``round-0/shards.json`` exists: an earlier attempt finished. Compare the input with the fingerprint
   it recorded (:mod:`airflow_claude_batch.core.build.input_change`): unchanged, return its descriptors
   unchanged (shards that may have been submitted never change), or nothing in a dry run; changed,
   rebuild (nothing submitted), add shards of the new records (``add_new``), or stop.
2. Check the settings (model price, budget) before reading any record.
3. Stream the records: render, validate, check id uniqueness, write shards, sample for the estimate.
   Any error removes the shards written so far.
4. Estimate the cost and write ``estimate.json`` (also in a dry run, and also when over budget, so the
   figures can be read).
5. Over budget: remove the shards and raise ``BudgetExceededError``.
6. Write ``round-0/shards.json``: from then on the run's shards are fixed; then ``input.json``, the
   fingerprint of what was read (after, so that a build stopped between the two is redone).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_claude_batch.core.build.input_change import (
    ADD_NEW,
    FAIL,
    REBUILD,
    REUSE,
    KnownIds,
    forget_refused_submits,
    known_ids,
    plan_rerun,
    write_answered_earlier,
)
from airflow_claude_batch.core.build.input_fingerprint import InputFingerprint, write_fingerprint
from airflow_claude_batch.core.build.rejections import InvalidRecordPolicy, Rejections
from airflow_claude_batch.core.money.budget import check_budget
from airflow_claude_batch.core.money.cost_history import RunCost
from airflow_claude_batch.core.money.estimate import CostEstimate, EstimateOptions, estimate_cost
from airflow_claude_batch.core.money.input_tokens import ReservoirSample, TokenCounter, measure_tokens
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.requests.rendering import EncodedRequest, RequestTemplate
from airflow_claude_batch.core.requests.request_stream import iter_requests
from airflow_claude_batch.core.requests.sharding import ShardLimits, ShardWriter, WrittenShard
from airflow_claude_batch.core.requests.sources import RecordSource
from airflow_claude_batch.core.reuse.answer_store import AnswerStore
from airflow_claude_batch.core.reuse.lookup import AnswerLookup
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, read_json, write_json

log = logging.getLogger(__name__)

FIRST_ROUND = 0


@dataclass(frozen=True)
class BuildResult:
    """What the build produced.

    :param shards: round 0's descriptors (empty in a dry run).
    :param estimate: the estimate, or ``None`` when an earlier attempt's shards were reused.
    :param reused: whether ``round-0/shards.json`` already existed.
    :param reused_requests: requests this build answered from the answer store (``reused.jsonl``).
    """

    shards: tuple[ShardDescriptor, ...]
    estimate: CostEstimate | None
    reused: bool = False
    reused_requests: int = 0

    def shard_dicts(self) -> list[dict[str, Any]]:
        """The descriptors as XCom-ready dicts."""
        return [shard.to_dict() for shard in self.shards]


def build_run(
    source: RecordSource,
    template: RequestTemplate,
    folder: RunFolder,
    *,
    limits: ShardLimits | None = None,
    options: EstimateOptions | None = None,
    prices: PriceTable | None = None,
    count_tokens: TokenCounter | None = None,
    dry_run: bool = False,
    fingerprint: InputFingerprint | None = None,
    on_input_change: str = FAIL,
    history: Sequence[RunCost] = (),
    invalid_records: InvalidRecordPolicy | None = None,
    answer_store: AnswerStore | None = None,
) -> BuildResult:
    """Build round 0 of a run (see the module's docstring for the order of work).

    :param source: the records with their locations.
    :param template: how records become requests.
    :param folder: the run folder.
    :param limits: count and byte limits per shard.
    :param options: expected output and budget.
    :param prices: the price table (default: shipped prices, overlaid by ``CLAUDE_BATCH_PRICES_FILE``).
    :param count_tokens: counts a request's input tokens (the API's token-counting endpoint), or ``None``
        for the local estimate.
    :param dry_run: validate, count and estimate without writing shards or ``shards.json``.
    :param fingerprint: what the build reads (recorded, and compared on a rerun); ``None``: not checked.
    :param on_input_change: ``"fail"``, ``"keep"`` or ``"add_new"`` (see ``input_change``).
    :raises InputChangedError: the input changed after a submit and ``on_input_change`` is ``"fail"``.
    :param history: earlier runs of the same pipeline, for the expected cost (see
        :func:`~airflow_claude_batch.core.money.cost_history.pipeline_history`).
    :param invalid_records: what a bad record does: stop the build (default) or go to ``rejected.jsonl``
        (see :mod:`~airflow_claude_batch.core.build.rejections`).
    :param answer_store: look each request up in this store before it is sharded (``reuse_answers``):
        a hit is not sent, its row goes to ``reused.jsonl``; the estimate and the budget count only what
        will be sent. ``None``: every request is sent.
    :raises InputError: a record or a setting is invalid (nothing was submitted).
    :raises BudgetExceededError: the estimate its ``budget_basis`` names is over ``max_cost_usd``.
    :raises StorageError: the run folder cannot be read or written.
    """
    limits = limits or ShardLimits()
    options = options or EstimateOptions()
    prices = prices or PriceTable.load()
    existing = read_json(folder.shard_list(FIRST_ROUND))
    built: list[ShardDescriptor] = []
    known: KnownIds | None = None
    if existing is not None:
        built = [ShardDescriptor.from_dict(item) for item in existing]
        checked = fingerprint is not None and not dry_run
        plan = plan_rerun(folder, fingerprint, built, on_input_change) if checked else None
        if plan is None or plan.action == REUSE:
            # Also in a dry run: the run's real estimate and shards must not be overwritten.
            log.info("round 0 was built by an earlier attempt; reusing its %d shard(s)", len(existing))
            return BuildResult(() if dry_run else tuple(built), None, reused=True)
        if plan.action == REBUILD:
            forget_refused_submits(folder, built)
            built = []
    if on_input_change == ADD_NEW and fingerprint is not None and not dry_run:
        known = known_ids(folder, built, fingerprint)
    if template.model is not None:
        prices.price(template.model)  # an unknown model fails now, not after reading every record
    writer = ShardWriter(folder, FIRST_ROUND, limits, dry_run=dry_run, first_index=len(built))
    with writer, ExitStack() as reused_out:
        lookup = _lookup(folder, answer_store, reused_out, dry_run=dry_run)
        left_out = _LeftOut(known, lookup)
        policy = invalid_records or InvalidRecordPolicy()
        rejections = Rejections(policy, lambda: atomic_writer(folder.rejected))
        sample = _write_shards(source, template, writer, options.sample_size, left_out, rejections)
        rejections.finish(accepted=sample.seen + left_out.in_run + left_out.answered + left_out.reused)
        shards = writer.close()
        rate = measure_tokens(sample.items, template, count_tokens)
        estimate = estimate_cost(shards, rate, template, prices, options, history=history, dry_run=dry_run)
        write_json(
            folder.estimate,
            {
                **_with_earlier_part(folder, estimate, built),
                "built_at": _now(),
                "rejected_records": rejections.count,
                **_reuse_figures(lookup),
            },
        )
        check_budget(estimate)
        reused_out.close()  # reused.jsonl is published whole before shards.json fixes the run
        descriptors = _descriptors(folder, shards, estimate)
        if not dry_run:
            all_shards = (*built, *descriptors)
            write_json(folder.shard_list(FIRST_ROUND), [shard.to_dict() for shard in all_shards])
            if known is not None:
                write_answered_earlier(folder, left_out.answered, known.runs)
            if fingerprint is not None:
                write_fingerprint(folder, fingerprint)
    if lookup is not None:
        log.info(
            "reuse_answers: %d request(s) answered from the answer store (bought for $%.4f), %d to send",
            lookup.hits,
            lookup.saved_usd,
            lookup.misses,
        )
    if left_out.answered:
        log.info("%d record(s) answered by earlier runs of the interval were left out", left_out.answered)
    if built:
        log.info(
            "on_input_change='add_new': %d new request(s) in %d extra shard(s); %d record(s) already in "
            "this run, %d answered by earlier runs of the interval, were left out",
            estimate.records,
            len(descriptors),
            left_out.in_run,
            left_out.answered,
        )
        return BuildResult((*built, *descriptors), estimate, reused_requests=left_out.reused)
    log.info(
        "%s %d request(s) into %d shard(s); estimate at batch prices: upper bound $%.4f, expected $%.4f (%s)",
        "dry run: checked" if dry_run else "built",
        estimate.records,
        estimate.shards,
        estimate.upper_batch_usd,
        estimate.expected_batch_usd,
        estimate.method,
    )
    return BuildResult(
        () if dry_run else descriptors, estimate, reused_requests=0 if dry_run else left_out.reused
    )


def _lookup(
    folder: RunFolder, store: AnswerStore | None, stack: ExitStack, *, dry_run: bool
) -> AnswerLookup | None:
    """The build's answer lookup writing ``reused.jsonl``, or ``None`` without a store.

    When ``add_new`` adds shards to a run, the records reused by its earlier part are not in its shards,
    so they are looked up again and ``reused.jsonl`` is written whole anew (a record pruned from the
    store since is sent with the new records).
    """
    if store is None:
        return None
    if dry_run:
        return AnswerLookup(store, None)
    return AnswerLookup(store, stack.enter_context(atomic_writer(folder.reused)))


def _reuse_figures(lookup: AnswerLookup | None) -> dict[str, Any]:
    """``estimate.json``'s count of reused requests and what they cost when bought."""
    if lookup is None:
        return {}
    return {"reused_records": lookup.hits, "reused_saved_usd": round(lookup.saved_usd, 6)}


class _LeftOut:
    """Counts the records left out of the shards: by ``add_new`` (none without ``known``) and those the
    answer store answers (none without ``lookup``)."""

    def __init__(self, known: KnownIds | None, lookup: AnswerLookup | None = None) -> None:
        self.known = known
        self.lookup = lookup
        self.in_run = 0
        self.answered = 0

    @property
    def reused(self) -> int:
        return self.lookup.hits if self.lookup is not None else 0

    @property
    def active(self) -> bool:
        return self.known is not None or self.lookup is not None

    def skip(self, request: EncodedRequest) -> bool:
        custom_id = request.custom_id
        known = self.known
        if known is None:
            return self.lookup is not None and self.lookup.answered(request)
        if custom_id in known.in_run:
            self.in_run += 1
            return True
        if custom_id in known.answered:
            self.answered += 1
            return True
        return self.lookup is not None and self.lookup.answered(request)


def _write_shards(
    source: RecordSource,
    template: RequestTemplate,
    writer: ShardWriter,
    sample_size: int,
    left_out: _LeftOut,
    rejections: Rejections,
) -> ReservoirSample:
    sample = ReservoirSample(sample_size)
    offer, add = sample.offer, writer.add
    skip = left_out.skip if left_out.active else None
    for request in iter_requests(source, template, on_invalid=rejections.reject):
        if skip is not None and skip(request):
            continue
        add(request)
        offer(request)
    return sample


def _with_earlier_part(
    folder: RunFolder, estimate: CostEstimate, built: list[ShardDescriptor]
) -> dict[str, Any]:
    """The ``estimate.json`` document: this build's, added to the earlier part's when shards were added."""
    current = estimate.to_dict()
    earlier = read_json(folder.estimate) if built else None
    if not isinstance(earlier, dict):
        return current
    merged = dict(earlier)
    for key in ("records", "estimated_cost_usd_upper", "estimated_cost_usd_expected"):
        if isinstance(earlier.get(key), (int, float)) and isinstance(current.get(key), (int, float)):
            merged[key] = (
                round(earlier[key] + current[key], 6)
                if isinstance(current[key], float)
                else (earlier[key] + current[key])
            )
    merged["added_parts"] = [*earlier.get("added_parts", []), current]
    return merged


def _descriptors(
    folder: RunFolder, shards: list[WrittenShard], estimate: CostEstimate
) -> tuple[ShardDescriptor, ...]:
    run_uri = str(folder.root)
    return tuple(
        shard.descriptor(run_uri, FIRST_ROUND, round(cost, 6))
        for shard, cost in zip(shards, estimate.shard_upper_batch_usd, strict=True)
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
