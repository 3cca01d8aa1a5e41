"""The budget left after a round: the run's budget less what its rounds so far may have cost, from the
ledger (``actual_upper_usd``: the answers' cost plus synchronous retries of unknown outcome at their upper
cost, which may have been billed)."""

from __future__ import annotations

from airflow_claude_batch.core.money.budget import RoundBudget
from airflow_claude_batch.core.money.estimate import DEFAULT_BUDGET_BASIS
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.report.ledger import scan_run
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import read_json


def round_budget(folder: RunFolder, round_index: int, prices: PriceTable) -> RoundBudget | None:
    """The budget left for the requeue of ``round_index``; ``None`` when the run has no budget.

    :param folder: the run folder (its ``estimate.json`` holds the budget, its basis and the figures).
    :param round_index: the round whose requeue is deciding.
    :param prices: prices for runs that froze none (the run's frozen prices are used when present).
    """
    estimate = read_json(folder.estimate)
    if not isinstance(estimate, dict) or estimate.get("max_cost_usd") is None:
        return None
    records = int(estimate.get("records") or 0)
    basis = str(estimate.get("budget_basis") or DEFAULT_BUDGET_BASIS)
    costs = estimate.get("cost_usd") or {}
    figures = costs.get("upper_bound" if basis == "upper" else "expected") or {}
    if not records or not figures:
        return None
    manifest, _ = scan_run(folder, prices=prices, max_rounds=round_index + 1)
    money = manifest.money
    # A synchronous retry of unknown outcome may have been billed: it is spent at its upper cost.
    spent = money.actual_upper_usd if money.actual_upper_usd is not None else money.actual_usd
    return RoundBudget(
        max_cost_usd=float(estimate["max_cost_usd"]),
        basis=basis,
        spent_usd=spent,
        per_request_usd=float(figures.get("batch", 0.0)) / records,
        per_sync_request_usd=float(figures.get("standard", 0.0)) / records,
    )
