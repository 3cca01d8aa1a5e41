"""A run's money: token totals per model and per rate, priced with the prices the run froze.

Money is recomputed from each answer's usage with the prices the build froze into ``estimate.json``
(the prices loaded at report time only when the run has none, such as a run built before prices were
frozen), cache writes and reads at their own rates: ``batch_usd`` (batch answers at batch prices),
``sync_retry_usd`` (synchronous retries at standard prices), ``actual_usd`` (their sum),
``synchronous_equivalent_usd`` (every answer at standard prices: what the same work would have cost
without batches) and ``savings_usd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_claude_batch.batch.manifest import Money
from airflow_claude_batch.batch.pricing import PriceTable
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.storage import read_json
from airflow_claude_batch.batch.tokens import TokenTotals


class ModelTotals:
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

    @classmethod
    def combined(cls, prices: PriceTable, *parts: ModelTotals) -> ModelTotals:
        """Return the sum of ``parts`` (an empty table when there is none)."""
        total = cls(prices)
        for part in parts:
            total.merge(part)
        return total

    def merge(self, other: ModelTotals) -> None:
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


def run_prices(folder: RunFolder, loaded: PriceTable) -> PriceTable:
    """The prices the run's build froze into ``estimate.json``; ``loaded`` when it froze none."""
    estimate = read_json(folder.estimate)
    frozen = estimate.get("prices") if isinstance(estimate, dict) else None
    if not isinstance(frozen, dict) or not frozen.get("models"):
        return loaded
    return PriceTable.from_document(frozen, f"{folder.estimate} (as of {frozen.get('as_of')})")


def run_money(
    batch_tokens: ModelTotals,
    sync_tokens: ModelTotals,
    prices: PriceTable,
    *,
    estimated_upper: float | None,
    estimated_expected: float | None,
    sync_unknown_usd: float = 0.0,
) -> Money:
    """The run's money from its batch answers and its synchronous retries.

    :param batch_tokens: the batch answers' tokens (batch prices).
    :param sync_tokens: the synchronous retries' tokens (standard prices).
    :param prices: the run's prices (see :func:`run_prices`).
    :param estimated_upper: the build's upper bound, when known.
    :param estimated_expected: the build's expected figure, when known.
    :param sync_unknown_usd: synchronous retries of unknown outcome at their upper cost (possibly
        billed: in the upper figure, not in the actual one).
    """
    all_tokens = ModelTotals.combined(prices, batch_tokens, sync_tokens)
    batch_usd = batch_tokens.cost(prices, batch=True)
    sync_usd = sync_tokens.cost(prices, batch=False)
    equivalent = all_tokens.cost(prices, batch=False)
    actual = batch_usd + sync_usd
    return Money(
        estimated_upper_usd=estimated_upper,
        estimated_expected_usd=estimated_expected,
        batch_usd=round(batch_usd, 6),
        sync_retry_usd=round(sync_usd, 6),
        actual_usd=round(actual, 6),
        synchronous_equivalent_usd=round(equivalent, 6),
        savings_usd=round(equivalent - actual, 6),
        savings_pct=round(100.0 * (equivalent - actual) / equivalent, 2) if equivalent > 0 else None,
        sync_retry_unknown_usd=round(sync_unknown_usd, 6),
        actual_upper_usd=round(actual + sync_unknown_usd, 6),
    )
