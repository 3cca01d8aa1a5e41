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
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.money.money_meter import MoneyMeter, Rate, run_prices
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals

__all__ = ["ModelTotals", "Money", "run_money", "run_prices"]


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
    :param sync_retry_unknown_usd: synchronous retries whose outcome is unknown (a timeout, a reset, a
        5xx), at their upper cost: possibly billed, so counted in the upper figure, never as 0.
    :param actual_upper_usd: ``actual_usd + sync_retry_unknown_usd``: the most the run may have cost.
    """

    estimated_upper_usd: float | None
    estimated_expected_usd: float | None
    batch_usd: float
    sync_retry_usd: float
    actual_usd: float
    synchronous_equivalent_usd: float
    savings_usd: float
    savings_pct: float | None
    sync_retry_unknown_usd: float = 0.0
    actual_upper_usd: float | None = None


class ModelTotals:
    """Token totals per model and per rate (prompt-length tier, multipliers), priced at the end (one
    price lookup per rate, not per row)."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self.by_model: dict[str, TokenTotals] = {}
        self.by_rate: dict[Rate, TokenTotals] = {}
        self._meter = MoneyMeter(prices)

    def add(
        self, model: str, usage: Mapping[str, Any] | None, request: Mapping[str, Any] | None = None
    ) -> None:
        """Count one answer's tokens at its rate (``request``: the row's ``pricing_params``)."""
        totals = TokenTotals.from_usage(usage)
        _add_to(self.by_model, model, totals)
        _add_to(self.by_rate, self._meter.rate_of(model, totals.total_input, request, usage), totals)

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
        """US dollars of every rate's tokens, priced by the money meter."""
        meter = MoneyMeter(prices, batch=batch)
        return sum(meter.cost(rate, totals) for rate, totals in self.by_rate.items())


def _add_to(table: dict[Any, TokenTotals], key: Any, totals: TokenTotals) -> None:
    previous = table.get(key)
    table[key] = totals if previous is None else previous + totals


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
