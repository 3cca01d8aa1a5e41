"""Money: one meter from token usage to US dollars (tiers, cache rates, multipliers), the prices a run
freezes, the run's totals, the estimate before anything is sent and the budget guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
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

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cost_history": ("RunCost", "pipeline_history"),
        "estimate": ("DEFAULT_BUDGET_BASIS", "EstimateOptions"),
        "input_tokens": ("TokenCounter",),
        "pricing": ("PriceTable",),
    },
)
