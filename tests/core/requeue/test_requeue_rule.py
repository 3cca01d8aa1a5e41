"""The requeue rule: what happens to an errored, expired or canceled request."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_claude_batch.core.requeue.requeue_rule import Decision, RequeueRule


@pytest.mark.parametrize(
    ("outcome", "row", "rule", "decision", "reason"),
    [
        ("expired", {}, RequeueRule(), Decision.REQUEUE, "expired"),
        ("errored", {"error_type": "overloaded_error"}, RequeueRule(), Decision.REQUEUE, "retryable"),
        ("errored", {"error_type": "rate_limit_error"}, RequeueRule(), Decision.REQUEUE, "retryable"),
        (
            "errored",
            {"error_type": "invalid_request_error"},
            RequeueRule(),
            Decision.DEAD_LETTER,
            "fix its params",
        ),
        ("errored", {"error_type": "not_found_error"}, RequeueRule(), Decision.DEAD_LETTER, "model name"),
        ("errored", {"error_type": "brand_new_error"}, RequeueRule(), Decision.DEAD_LETTER, "will not help"),
        ("canceled", {"cancel_initiated_at": None}, RequeueRule(), Decision.REQUEUE, "canceled"),
        (
            "canceled",
            {"cancel_initiated_at": None},
            RequeueRule(requeue_canceled=False),
            Decision.HOLD,
            "off",
        ),
        (
            "canceled",
            {"cancel_initiated_at": "2026-01-01T00:00:00Z"},
            RequeueRule(),
            Decision.HOLD,
            "by user",
        ),
        (
            "canceled",
            {"cancel_initiated_at": "2026-01-01T00:00:00Z"},
            RequeueRule(requeue_user_canceled=True),
            Decision.REQUEUE,
            "by user",
        ),
    ],
)
def test_the_rule(
    outcome: str, row: dict[str, Any], rule: RequeueRule, decision: Decision, reason: str
) -> None:
    verdict = rule.decide(outcome, {"custom_id": "x", **row})
    assert verdict.decision is decision
    assert reason in verdict.reason


def test_final_outcomes_are_not_decided() -> None:
    with pytest.raises(ValueError, match="final"):
        RequeueRule().decide("succeeded", {"custom_id": "x"})
