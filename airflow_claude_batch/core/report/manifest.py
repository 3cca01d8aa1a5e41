"""The shape of ``manifest.json``: what a run did and cost, as the report stores it (schema-versioned).

Every input record ends in exactly one disposition (``outcomes.DISPOSITIONS``); the manifest says whether they
add up to the input count (``reconciled``) and, if not, why (``notes``). Its money is described in
:mod:`~airflow_claude_batch.core.money.run_totals`; the scan that fills it in
:mod:`~airflow_claude_batch.core.report.ledger`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_claude_batch.core.money.run_totals import Money
from airflow_claude_batch.core.run.layout import RunFolder

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
#: The run's files, relative to the run folder.
RUN_FILES = RunFolder.run_files()


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
    :param sync_retry_unknown_usd: the round's synchronous retries of unknown outcome, at their upper cost.
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
    sync_retry_unknown_usd: float = 0.0


@dataclass(frozen=True)
class Manifest:
    """What a run did and cost, as stored in ``manifest.json``.

    :param run_uri: the run folder.
    :param input_records: records the build read.
    :param max_rounds: rounds allowed in all.
    :param rounds: one entry per round that exists.
    :param outcomes: rows per outcome file over all rounds (a requeued request counts once per round).
    :param dispositions: final disposition counts (``DISPOSITIONS``: ``succeeded``, ``invalid_output``,
        ``refused``, ``dead_lettered``, ``pending``, ``rejected``).
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
    :param canceled: when the run was canceled on purpose (its ``cancel.json``), else ``None``.
    :param reused: requests answered from the answer store (``reuse_answers``): ``requests``, and
        ``saved_usd``, what those answers cost when they were bought (this run paid nothing for them);
        their rows are in ``reused.jsonl`` and counted in the ``succeeded`` disposition.
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
    canceled: str | None = None
    reused: dict[str, Any] = field(default_factory=lambda: {"requests": 0, "saved_usd": 0.0})
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
            "actual_cost_usd_upper": self.money.actual_upper_usd,
            "canceled": self.canceled,
            "synchronous_equivalent_usd": self.money.synchronous_equivalent_usd,
            "savings_usd": self.money.savings_usd,
            "reused": dict(self.reused),
            "money": asdict(self.money),
            "files": dict(self.files),
        }
