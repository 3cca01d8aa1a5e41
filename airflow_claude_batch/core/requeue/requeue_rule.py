"""The requeue rule: whether an unfinished request is requeued, dead-lettered or held as pending.

The rule (``RequeueRule.decide``), applied to each row of a shard's ``errored``, ``expired`` and
``canceled`` files:

- ``expired``: requeued; the batch ended before the request was processed.
- ``errored`` with a retryable type (``overloaded_error``, ``api_error``, ``rate_limit_error``,
  ``timeout_error``): requeued. Any other type is dead-lettered with its reason: sending the same request
  again would fail the same way.
- ``canceled`` in a batch that was cancelled on purpose (its ``cancel_initiated_at`` is set: by a person,
  or by the wait's ``cancel_on_timeout``): a decision, so not requeued but kept as pending with the reason
  "canceled by user" (``requeue_user_canceled=True`` requeues them). Canceled without a cancellation on
  record: requeued when ``requeue_canceled`` (the default).

When the run was canceled on purpose (``run_canceled``, its ``cancel.json``), nothing is sent again:
every request the rule would requeue, and every canceled one, is held as pending with the reason
``canceled``; non-retryable errors are still dead-lettered.

The report applies the same rule to the last round, where nothing is requeued any more: what would be
requeued is listed as pending, never dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.error_types import is_retryable_error
from airflow_claude_batch.core.run.outcomes import UNFINISHED_OUTCOMES, Outcome, PendingReason

_DEAD_LETTER_HINTS = {
    "invalid_request_error": "the API rejected the request; fix its params (model, max_tokens, messages)",
    "not_found_error": "the model or a resource was not found; check the model name",
    "permission_error": "the key may not use this model or feature; check the workspace's access",
    "authentication_error": "the API key was rejected; fix the connection",
    "billing_error": "the account has a billing problem; fix it in the console",
    "request_too_large": "the request is over the size limit; shorten the prompt",
    "model_context_window_exceeded": "the prompt and the answer do not fit the model's context window; "
    "shorten the prompt, lower max_tokens, or use a model with a larger context window",
}


class Decision(enum.Enum):
    """What happens to an unfinished request."""

    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"
    HOLD = "hold"  # neither retried nor dead: listed as pending


@dataclass(frozen=True)
class Verdict:
    """A decision and the reason a person reads in the dead-letter or pending file."""

    decision: Decision
    reason: str


@dataclass(frozen=True)
class RequeueRule:
    """The rule for unfinished requests (see the module's docstring).

    :param requeue_canceled: requeue canceled requests of a batch nobody cancelled on purpose.
    :param requeue_user_canceled: requeue canceled requests even when the batch was cancelled on purpose.
    :param run_canceled: the run was canceled on purpose: hold what would be requeued (reason
        ``canceled``).
    """

    requeue_canceled: bool = True
    requeue_user_canceled: bool = False
    run_canceled: bool = False

    def decide(self, outcome: str, row: Mapping[str, Any]) -> Verdict:
        """Return the verdict for one row of an ``errored``, ``expired`` or ``canceled`` file."""
        verdict = self._decide(outcome, row)
        if self.run_canceled and (verdict.decision is Decision.REQUEUE or outcome == Outcome.CANCELED):
            return Verdict(Decision.HOLD, PendingReason.CANCELED)
        return verdict

    def _decide(self, outcome: str, row: Mapping[str, Any]) -> Verdict:
        if outcome == Outcome.EXPIRED:
            return Verdict(Decision.REQUEUE, "expired: the batch ended before the request was processed")
        if outcome == Outcome.ERRORED:
            error_type = row.get("error_type")
            if is_retryable_error(error_type):
                return Verdict(Decision.REQUEUE, f"retryable error: {error_type}")
            hint = _DEAD_LETTER_HINTS.get(str(error_type), "retrying the same request will not help")
            return Verdict(Decision.DEAD_LETTER, f"non-retryable error {error_type}: {hint}")
        if outcome == Outcome.CANCELED:
            if row.get("cancel_initiated_at"):
                if self.requeue_user_canceled:
                    return Verdict(Decision.REQUEUE, "canceled by user (requeue_user_canceled is on)")
                return Verdict(Decision.HOLD, "canceled by user")
            if self.requeue_canceled:
                return Verdict(Decision.REQUEUE, Outcome.CANCELED)
            return Verdict(Decision.HOLD, "canceled (requeue_canceled is off)")
        raise ValueError(f"outcome {outcome!r} is final; only {UNFINISHED_OUTCOMES} are decided")


def dead_letter_row(row: Mapping[str, Any], round_index: int, reason: str) -> dict[str, Any]:
    """Return a dead-letter row: ``custom_id``, ``round``, ``reason``, ``error_type``, ``message``."""
    return {
        "custom_id": row["custom_id"],
        "round": round_index,
        "reason": reason,
        "error_type": row.get("error_type"),
        "message": row.get("message"),
    }


def pending_row(custom_id: str, round_index: int, last_outcome: str, reason: str) -> dict[str, Any]:
    """Return a pending row: ``custom_id``, ``round``, ``last_outcome``, ``reason``."""
    return {"custom_id": custom_id, "round": round_index, "last_outcome": last_outcome, "reason": reason}
