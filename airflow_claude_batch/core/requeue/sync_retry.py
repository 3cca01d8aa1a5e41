"""The synchronous retry: errored requests sent once more as synchronous Messages calls (full price).

With ``retry_errored_sync``, the requeue sends a round's retryable errored requests this way first
(recorded in the shard's ``sync_retry.jsonl``); those that still fail with a retryable error, or that
the synchronous endpoint definitely refused (``fell_back``: refused before sending, or answered with a
4xx the API's way), go to the next round.

A call whose outcome is unknown (a timeout or reset after sending, a 5xx, a gateway's error page) may
have been processed and billed: its row is ``outcome: "unknown"`` with ``cost_usd_upper`` (the most it
may have cost at standard prices), and the request is never sent again in this run: it stays pending
with the reason ``sync_outcome_unknown``, so it is never paid twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.result_rows import answer_row, error_row
from airflow_claude_batch.core.run.outcomes import Outcome
from airflow_claude_batch.exceptions import ClaudeBatchError

log = logging.getLogger(__name__)


class SyncRequestError(ClaudeBatchError):
    """A synchronous Messages call failed with an API error.

    :param error_type: the API's error type (``overloaded_error``, ``invalid_request_error`` ...).
    :param message: the API's message.
    :param request_id: the API's request id, when known.
    :param endpoint_fault: the failure is not the request's own: the synchronous endpoint is missing
        (a gateway that forwards only the batch endpoints), unreachable, or refuses the key. The request
        then falls back to the next round, never to the dead-letter file, and the round sends no more
        synchronous calls.
    :param outcome_unknown: the call may have been processed (a timeout or reset after sending, a 5xx,
        a gateway's error page): possibly billed, never sent again.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        request_id: str | None = None,
        *,
        endpoint_fault: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.endpoint_fault = endpoint_fault
        self.outcome_unknown = outcome_unknown
        super().__init__(f"{error_type}: {message}")


#: Sends one request's Messages params synchronously and returns the Message as a dict; raises
#: ``SyncRequestError`` for an API error.
SendMessage = Callable[[Mapping[str, Any]], Mapping[str, Any]]

#: Synchronous calls in flight at once, by default.
DEFAULT_SYNC_CONCURRENCY = 4
#: Input tokens the API may add to a request's own (message framing, a tool-use system prompt), on top
#: of its JSON bytes, in the upper cost of a call whose outcome is unknown.
FRAMING_TOKENS_ALLOWANCE = 1024


@dataclass(frozen=True)
class SyncRetry:
    """Send errored requests once as synchronous Messages calls (full price).

    :param send: the call.
    :param prices: prices the answers at standard (synchronous) rates, through the money meter (the
        request's params give its multipliers, such as ``inference_geo``); the requeue passes the
        run's frozen prices.
    :param validator: the user's parser/schema for the answers.
    :param concurrency: calls in flight at once (a shard's calls are sent through a pool of this size).
    """

    send: SendMessage
    prices: PriceTable
    validator: OutputValidator | None = None
    concurrency: int = DEFAULT_SYNC_CONCURRENCY
    _pricer: MoneyMeter = field(init=False, repr=False, compare=False)
    _broken: list[str] = field(init=False, repr=False, compare=False, default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pricer", MoneyMeter(self.prices, batch=False))
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")

    @property
    def endpoint_broken(self) -> str | None:
        """Why the synchronous endpoint is not used any more in this round, or ``None``."""
        return self._broken[0] if self._broken else None

    def retry(self, custom_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return the ``sync_retry`` row: ``outcome`` (succeeded / invalid_output / errored /
        fell_back / unknown), ``price`` ("standard") and the fields of the matching outcome row.
        ``fell_back`` rows (a definite refusal, nothing billed) are requeued; ``unknown`` rows (possibly
        billed, ``cost_usd_upper``) stay pending."""
        broken = self.endpoint_broken
        if broken is not None:
            return self._fell_back(custom_id, broken, sent=False)
        try:
            message = self.send(params)
        except SyncRequestError as exc:
            if exc.outcome_unknown:
                return self._unknown(custom_id, params, exc)
            if exc.endpoint_fault:
                reason = f"{exc.error_type}: {exc.message}"
                self._broken.append(reason)
                log.warning(
                    "the synchronous endpoint failed not by the request's fault (%s); this round's "
                    "remaining retryable errors are requeued without synchronous calls",
                    reason,
                )
                return self._fell_back(custom_id, reason, sent=True)
            error = {"error": {"type": exc.error_type, "message": exc.message}, "request_id": exc.request_id}
            return {"outcome": Outcome.ERRORED, "price": "standard", **error_row(custom_id, error)}
        outcome, row, _ = answer_row(
            custom_id, message, pricer=self._pricer, validator=self.validator, request=params
        )
        return {"outcome": outcome, "price": "standard", **row}

    def _unknown(self, custom_id: str, params: Mapping[str, Any], exc: SyncRequestError) -> dict[str, Any]:
        if exc.endpoint_fault:
            # a timeout or a reset: the round's remaining calls fall back (definitely not sent)
            self._broken.append(f"{exc.error_type}: {exc.message}")
        log.warning(
            "the synchronous retry of %s has an unknown outcome (%s: %s); counted as possibly billed and "
            "kept pending, never sent again",
            custom_id,
            exc.error_type,
            _short_reason(exc.message),
        )
        return {
            "outcome": Outcome.UNKNOWN,
            "custom_id": custom_id,
            "price": "standard",
            "retryable": False,
            "error_type": exc.error_type,
            "message": _short_reason(exc.message),
            "request_id": exc.request_id,
            "cost_usd_upper": round(self.upper_cost(params), 6),
        }

    def upper_cost(self, params: Mapping[str, Any]) -> float:
        """The most one synchronous call of ``params`` may cost at standard prices: input tokens bounded
        by the request's JSON bytes (a token holds at least one byte) plus the framing allowance, and
        ``max_tokens`` of output, priced by the price table with the multipliers the params trigger."""
        model = str(params.get("model") or "")
        input_bound = len(orjson.dumps(dict(params))) + FRAMING_TOKENS_ALLOWANCE
        totals = TokenTotals(input=input_bound, output=int(params.get("max_tokens") or 0))
        return self._pricer.cost(self._pricer.rate_of(model, input_bound, params), totals)

    @staticmethod
    def _fell_back(custom_id: str, reason: str, *, sent: bool) -> dict[str, Any]:
        return {
            "outcome": Outcome.FELL_BACK,
            "custom_id": custom_id,
            "retryable": True,
            "sent": sent,
            "message": f"synchronous endpoint unusable ({_short_reason(reason)}); requeued",
            "cost_usd": 0.0,
        }

    def retry_many(self, requests: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """Return the rows of ``retry`` for each ``(custom_id, params)``, in order, with at most
        ``concurrency`` calls in flight."""
        if self.concurrency == 1 or len(requests) <= 1:
            return [self.retry(custom_id, params) for custom_id, params in requests]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sync-retry") as pool:
            return list(pool.map(lambda item: self.retry(*item), requests))


def _short_reason(reason: str, limit: int = 300) -> str:
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."
