"""Money: one meter from token usage to US dollars (tiers, cache rates, multipliers), the prices a run
freezes, the run's totals, the estimate before anything is sent and the budget guard.
"""

from __future__ import annotations

from airflow_claude_batch.core.money.cost_history import RunCost, pipeline_history
from airflow_claude_batch.core.money.estimate import DEFAULT_BUDGET_BASIS, EstimateOptions
from airflow_claude_batch.core.money.input_tokens import TokenCounter
from airflow_claude_batch.core.money.pricing import PriceTable

__all__ = [
    "DEFAULT_BUDGET_BASIS",
    "EstimateOptions",
    "PriceTable",
    "RunCost",
    "TokenCounter",
    "pipeline_history",
]
