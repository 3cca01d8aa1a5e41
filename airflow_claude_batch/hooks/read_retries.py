"""Which reads are retried, after how long and how often: the hook's one retry policy.

A read is retried on HTTP 408, 409, 429 and 5xx (529 included) and on a request that got no answer
(the statuses the anthropic SDK retries itself), after the server's ``retry-after`` when it sent one
(at most 60 s), otherwise with exponential backoff and jitter (0.5 s doubling up to 8 s), at most the
connection's ``max_retries`` times. It is applied in two ways:

- JSON reads through the SDK, once the Base URL has answered: the SDK client's own ``max_retries``
  (the same statuses, ``retry-after`` and backoff), given by
  :func:`airflow_claude_batch.hooks.clients.build_client`.
- What the SDK does not cover, with :meth:`ReadRetryPolicy.retrying` /
  :meth:`ReadRetryPolicy.async_retrying` (tenacity): the results download over plain ``httpx``, and a
  hook's first call, made with the SDK's retries off so that a Base URL that refuses connections or does
  not resolve fails at once instead of after minutes of retries (``give_up``).

Results that lag their batch's status (a 404 on the results download of a batch that the API says
has ended) are waited for with :meth:`ReadRetryPolicy.lag_retrying`: backoff from 1 s doubling up to
30 s, for at most ``results_lag_seconds`` in all (``[claude_batch] results_lag_seconds``, 300 s by
default).

The create is never retried: it goes through a client whose ``max_retries`` is 0 and is never wrapped
here, because a create whose answer is lost may still have made a batch and the API has no idempotency
key (the caller looks the batch up instead: :mod:`airflow_claude_batch.core.submit.submission`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import tenacity

from airflow_claude_batch.core.api import parse_retry_after

RETRYABLE_STATUSES = frozenset({408, 409, 429})
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
RETRY_AFTER_CAP_SECONDS = 60.0
DEFAULT_RESULTS_LAG_SECONDS = 300.0
LAG_BASE_DELAY_SECONDS = 1.0
LAG_MAX_DELAY_SECONDS = 30.0


#: 429s that are no rate limit: a spend limit reached (no ``retry-after``; minutes do not help).
SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})


def is_retryable(exc: BaseException) -> bool:
    """Whether a read that failed with ``exc`` may be tried again."""
    if isinstance(exc, anthropic.APIStatusError):
        if getattr(exc, "error_code", None) in SPEND_LIMIT_CODES:
            return False
        return exc.status_code in RETRYABLE_STATUSES or exc.status_code >= 500
    return isinstance(exc, anthropic.APIConnectionError)


def retry_delay(exc: BaseException, attempt: int) -> float:
    """Seconds before the next attempt: the server's ``retry-after`` if it sent one, else backoff.

    :param attempt: the retries made so far (0 before the first one).
    """
    if isinstance(exc, anthropic.APIStatusError):
        asked = parse_retry_after(exc.response.headers, now=time.time())
        if asked is not None:
            return min(asked, RETRY_AFTER_CAP_SECONDS)
    return min(BASE_DELAY_SECONDS * 2**attempt, MAX_DELAY_SECONDS) * random.uniform(0.75, 1.0)


def _never(exc: BaseException) -> bool:
    return False


@dataclass(frozen=True)
class ReadRetryPolicy:
    """The retries of reads the SDK does not make itself, as tenacity retry loops.

    The loops re-raise the last error as it was (no ``RetryError``); use them as
    ``for attempt in policy.retrying(): with attempt: ...`` (``async for`` for the async one).

    :param max_retries: retries after the first attempt (the connection's ``max_retries``).
    :param results_lag_seconds: how long to wait, in all, for results that lag an ended batch.
    """

    max_retries: int
    results_lag_seconds: float = DEFAULT_RESULTS_LAG_SECONDS

    def retrying(self, give_up: Callable[[BaseException], object] = _never) -> tenacity.Retrying:
        """Return a retry loop for a blocking read.

        :param give_up: errors that are not retried although the policy would (an unreachable host).
        """
        return tenacity.Retrying(**self._options(give_up))

    def async_retrying(self, give_up: Callable[[BaseException], object] = _never) -> tenacity.AsyncRetrying:
        """Return a retry loop for an async read; ``give_up`` as for :meth:`retrying`."""
        return tenacity.AsyncRetrying(**self._options(give_up))

    def lag_retrying(self) -> tenacity.Retrying:
        """Return a retry loop that waits for results not found yet (``anthropic.NotFoundError``).

        Backoff from 1 s doubling up to 30 s, jittered, until ``results_lag_seconds`` have passed;
        the last ``NotFoundError`` is re-raised as it was.
        """
        return tenacity.Retrying(
            stop=tenacity.stop_after_delay(self.results_lag_seconds),
            retry=tenacity.retry_if_exception_type(anthropic.NotFoundError),
            wait=tenacity.wait_random_exponential(
                multiplier=LAG_BASE_DELAY_SECONDS, max=LAG_MAX_DELAY_SECONDS
            ),
            reraise=True,
        )

    def _options(self, give_up: Callable[[BaseException], object]) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "retry": tenacity.retry_if_exception(lambda exc: is_retryable(exc) and not give_up(exc)),
            "wait": _wait,
            "reraise": True,
        }


def _wait(state: tenacity.RetryCallState) -> float:
    failed = state.outcome.exception() if state.outcome is not None else None
    return retry_delay(failed, state.attempt_number - 1) if failed is not None else BASE_DELAY_SECONDS
