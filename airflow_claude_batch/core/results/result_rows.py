"""One result line → one outcome row, priced (see ``docs/architecture.md``, "Outcome rows").

A billed answer is priced by :class:`RowPricer` (batch rates in the fanout, standard rates for a
synchronous retry) and checked by the user's
:class:`~airflow_claude_batch.core.results.answer_parsing.OutputValidator`; an API error becomes an
``errored`` row that says whether sending the request again may help.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from airflow_claude_batch.core.api.error_types import is_retryable_error
from airflow_claude_batch.core.money.money_meter import PRICING_PARAMS, TOKEN_KINDS, MoneyMeter
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.results.answer_parsing import (
    InvalidOutput,
    OutputValidator,
    message_text,
    thinking_blocks,
    tool_calls,
)
from airflow_claude_batch.core.run.outcomes import Outcome

__all__ = ["TOKEN_KINDS", "RoutedRow", "RowPricer", "answer_row", "error_row", "route_line"]

#: Why a billed answer is no answer, as the rows say it (what to change).
CUT_AT_MAX_TOKENS = (
    "the answer was cut at max_tokens (stop_reason max_tokens): raise max_tokens, or give a parser "
    "that accepts a partial answer"
)
CONTEXT_WINDOW_EXCEEDED = (
    "the prompt and the answer reached the model's context window (stop_reason "
    "model_context_window_exceeded): shorten the prompt, lower max_tokens, or use a model with a "
    "larger context window"
)
PAUSED_TURN = (
    "the model paused a long turn (stop_reason pause_turn): the text is not a final answer; server "
    "tools that pause need a continuation, which a batch cannot send; lower the tools' work per "
    "request or send these requests synchronously"
)

#: A row's pricer is the run's money meter (batch rates in the fanout, standard for a synchronous retry).
RowPricer = MoneyMeter


class RoutedRow(NamedTuple):
    """One result line routed: the outcome file, the row, and the tokens billed (``None`` if unbilled)."""

    outcome: str
    row: dict[str, Any]
    tokens: TokenTotals | None = None


def answer_row(
    custom_id: str,
    message: Mapping[str, Any],
    *,
    pricer: RowPricer,
    validator: OutputValidator | None,
    request: Mapping[str, Any] | None = None,
) -> RoutedRow:
    """Route a billed answer: ``succeeded``, or ``invalid_output`` when the parser/schema rejects it.

    The row keeps every content block that carries an answer: ``text`` (text blocks only),
    ``tool_calls`` when the answer called tools, and ``thinking`` when the validator keeps it.

    :param custom_id: the request's id.
    :param message: the Message as a dict, with its ``usage``.
    :param pricer: prices the answer (batch or standard rates).
    :param validator: the user's parser/schema, or ``None`` to keep the answer unparsed.
    :param request: the request's params (or the priced part of them), for the multipliers they
        trigger; kept on the row as ``pricing_params`` when they set one.
    """
    model = message.get("model") or ""
    usage = message.get("usage") or {}
    text = message_text(message)
    pricing = pricer.pricing_params(request)
    tokens, cost = pricer.price(model, usage, pricing)
    common: dict[str, Any] = {"custom_id": custom_id, "model": model, "text": text}
    calls = tool_calls(message)
    if calls:
        common["tool_calls"] = calls
    if validator is not None and validator.keep_thinking:
        common["thinking"] = thinking_blocks(message)
    stop_reason = message.get("stop_reason")
    tail = {"stop_reason": stop_reason, "usage": usage, "cost_usd": cost}
    if pricing:
        tail[PRICING_PARAMS] = pricing
    not_an_answer = _stop_reason_outcome(custom_id, stop_reason, message, common, tail)
    if not_an_answer is not None:
        return RoutedRow(*not_an_answer, tokens)
    if validator is None:
        if stop_reason == "max_tokens":
            return RoutedRow(Outcome.INVALID_OUTPUT, {**common, "error": CUT_AT_MAX_TOKENS, **tail}, tokens)
        return RoutedRow(Outcome.SUCCEEDED, {**common, "parsed": None, **tail}, tokens)
    try:
        parsed = validator.parse(text, message)
    except InvalidOutput as exc:
        reason = str(exc)
        if stop_reason == "max_tokens":
            reason += " (the answer was cut at max_tokens; raise max_tokens)"
        return RoutedRow(Outcome.INVALID_OUTPUT, {**common, "error": reason, **tail}, tokens)
    return RoutedRow(Outcome.SUCCEEDED, {**common, "parsed": parsed, **tail}, tokens)


def _stop_reason_outcome(
    custom_id: str,
    stop_reason: Any,
    message: Mapping[str, Any],
    common: dict[str, Any],
    tail: dict[str, Any],
) -> tuple[str, dict[str, Any]] | None:
    """Return the outcome and row of a billed message that is no answer, by its ``stop_reason``.

    - ``refusal``: the model declined; its own outcome (``refused``), final, never requeued.
    - ``model_context_window_exceeded``: the prompt and the answer did not fit the model's context
      window; an ``errored`` row that is not retryable (it dead-letters, with the fix), still priced.
    - ``pause_turn``: a server tool's long turn was paused; the text is no answer (``invalid_output``).
    """
    if stop_reason == "refusal":
        return Outcome.REFUSED, {**common, "stop_details": message.get("stop_details"), **tail}
    if stop_reason == "model_context_window_exceeded":
        return Outcome.ERRORED, {
            "custom_id": custom_id,
            "error_type": "model_context_window_exceeded",
            "message": CONTEXT_WINDOW_EXCEEDED,
            "retryable": False,
            "request_id": None,
            "model": common["model"],
            **tail,
        }
    if stop_reason == "pause_turn":
        return Outcome.INVALID_OUTPUT, {**common, "error": PAUSED_TURN, **tail}
    return None


def error_row(custom_id: str, error: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the ``errored`` row of an API error response (``{"type": "error", "error": {...}}``)."""
    error = error or {}
    inner = error.get("error") if isinstance(error.get("error"), Mapping) else error
    error_type = str(inner.get("type") or "unknown_error")
    return {
        "custom_id": custom_id,
        "error_type": error_type,
        "message": inner.get("message") or "",
        "retryable": is_retryable_error(error_type),
        "request_id": error.get("request_id"),
    }


def route_line(
    line: Mapping[str, Any],
    *,
    pricer: RowPricer,
    validator: OutputValidator | None,
    cancel_initiated_at: str | None = None,
    request: Mapping[str, Any] | None = None,
) -> RoutedRow:
    """Route one result line to its outcome file.

    ``request`` is the line's request params (or their priced part), for the multipliers they trigger.

    An unrecognised result type becomes a non-retryable ``errored`` row, so the request stays
    accounted for (and dead-lettered with the reason) instead of vanishing.
    """
    custom_id = line["custom_id"]
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == Outcome.SUCCEEDED:
        message = result.get("message") or {}
        return answer_row(custom_id, message, pricer=pricer, validator=validator, request=request)
    if kind == Outcome.ERRORED:
        return RoutedRow(Outcome.ERRORED, error_row(custom_id, result.get("error")))
    if kind == Outcome.EXPIRED:
        return RoutedRow(Outcome.EXPIRED, {"custom_id": custom_id})
    if kind == Outcome.CANCELED:
        return RoutedRow(
            Outcome.CANCELED, {"custom_id": custom_id, "cancel_initiated_at": cancel_initiated_at}
        )
    unrecognised = {
        "custom_id": custom_id,
        "error_type": "unrecognised_result",
        "message": f"result type {kind!r} is not one this package knows; upgrade the package",
        "retryable": False,
        "request_id": None,
    }
    return RoutedRow(Outcome.ERRORED, unrecognised)
