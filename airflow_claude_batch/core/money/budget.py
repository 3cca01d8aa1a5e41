"""The budget guard: ``max_cost_usd`` against the figure the user chose (``budget_basis``).

Before anything is submitted, the build compares the budget with the expected cost
(``budget_basis="expected"``, the default) or with the upper bound (``"upper"``) and refuses the run
when it is over, with both figures and what makes them differ. After a round, its requeue is given what
is left (:class:`RoundBudget`, measured by :mod:`.round_budget` from the run's ledger): synchronous
retries and the next round are sent only while they fit, the rest is listed as pending with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_claude_batch.core.money.estimate import CostEstimate
from airflow_claude_batch.exceptions import BudgetExceededError

_GAP_WORDS = {
    "answered": "requests expected to end unanswered (dead-lettered) per the history",
    "output": "output up to max_tokens instead of the expected output",
    "cache": "no cache hit instead of the expected hit rate",
    "input": "more input than estimated, as the history shows",
    "sync_retry": "every answer from a synchronous retry at standard prices",
}


def gap_explanation(estimate: CostEstimate) -> str:
    """What the gap between the upper bound and the expected figure is made of, largest first."""
    parts = sorted(
        ((value, part) for part, value in estimate.gap_usd.items() if abs(value) >= 0.005),
        reverse=True,
    )
    if not parts:
        return "the two figures are the same"
    return "; ".join(f"${value:,.2f} for {_GAP_WORDS.get(part, part)}" for value, part in parts)


def check_budget(estimate: CostEstimate) -> None:
    """Fail the run when the figure its ``budget_basis`` names is over ``max_cost_usd``.

    :raises BudgetExceededError: with both figures, the basis, what drives the gap and what to change.
    """
    budget = estimate.max_cost_usd
    if budget is None or estimate.budgeted_usd <= budget:
        return
    basis = estimate.budget_basis
    other = "upper" if basis == "expected" else "expected"
    kind = estimate.basis.get("kind")
    learned = {
        "history": f"learned from {estimate.basis.get('runs')} earlier run(s)",
        "user": "from expected_output_tokens",
    }.get(str(kind), "a default: no history and no expected_output_tokens")
    change = (
        "lower max_tokens, or set budget_basis='expected' if the expected figure is the one to budget"
        if basis == "upper"
        else "set expected_output_tokens if the run will use less output"
        if kind == "default"
        else "check the run's input"
    )
    raise BudgetExceededError(
        f"the run's {basis} cost is ${estimate.budgeted_usd:,.2f}, over max_cost_usd=${budget:,.2f} "
        f"(budget_basis={basis!r}); expected ${estimate.expected_batch_usd:,.2f} ({learned}), upper bound "
        f"${estimate.upper_batch_usd:,.2f}. {estimate.records:,} requests in {estimate.shards} shard(s), "
        f"about {estimate.input_tokens:,} input tokens. The upper bound is above the expected "
        f"figure by: {gap_explanation(estimate)}. Nothing was submitted. Raise max_cost_usd, {change}, or "
        f"send fewer records (budget_basis={other!r} compares the budget with the {other} figure)."
    )


# --------------------------------------------------------------------------------------------------
# Requeue rounds and synchronous retries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundBudget:
    """What the rest of a run may spend after round ``r``, for its requeue.

    A synchronous retry is allowed while its cost (the estimate's per-request figure at standard
    prices, on the budget's basis) fits; the next round is built only when all of its requests, at the
    estimate's per-request figure, fit in what is left. What does not fit is listed as pending with the
    reason, never submitted.

    :param max_cost_usd: the run's budget.
    :param basis: ``"expected"`` or ``"upper"``.
    :param spent_usd: what the run's rounds up to ``r`` may have cost (batch answers and synchronous
        retries, a synchronous retry of unknown outcome at its upper cost: the ledger's
        ``actual_upper_usd``).
    :param per_request_usd: one requeued request, at batch prices.
    :param per_sync_request_usd: one synchronous retry, at standard prices.
    """

    max_cost_usd: float
    basis: str
    spent_usd: float
    per_request_usd: float
    per_sync_request_usd: float

    @property
    def left_usd(self) -> float:
        return self.max_cost_usd - self.spent_usd

    def reason(self, what: str, cost: float) -> str:
        """The pending row's reason when ``what`` (costing ``cost``) does not fit."""
        return (
            f"budget: {what} would cost about ${cost:,.4f} ({self.basis} estimate), and the run has spent "
            f"${self.spent_usd:,.4f} of max_cost_usd=${self.max_cost_usd:,.2f}; not submitted. Raise "
            "max_cost_usd and clear the requeue task to send them"
        )
