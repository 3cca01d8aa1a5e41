"""The API's rate limits, per workspace: requests per minute on the batch endpoints, and the queue.

Both are on by default at the API's tier-1 values (:data:`TIER1_RPM`, :data:`TIER1_QUEUE_LIMIT`, the
rate-limits page's Message Batches table: 50 requests per minute to the batch endpoints, polling
included, and 100,000 batch requests in the processing queue), so that the emulator is never kinder
than a new organization's API; a test or a run that wants speed raises them (``--rpm-limit``,
``--queue-limit``, ``0`` for none). Over a limit the API answers 429 ``rate_limit_error`` with a
``retry-after`` header in whole seconds.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from airflow_claude_batch.emulator.checks.errors import ApiError

WINDOW_SECONDS = 60.0
#: The Message Batches limits of usage tier 1 (the API's rate-limits page): calls per minute to the
#: batch endpoints together, and requests waiting or in progress across the workspace's batches.
TIER1_RPM = 50
TIER1_QUEUE_LIMIT = 100_000
# When a queue slot frees depends on processing; a client is told to look again after this long
# (``EmulatorConfig.queue_retry_after`` sets it).
QUEUE_RETRY_SECONDS = 30.0


def rate_limited(message: str, retry_after: float) -> ApiError:
    """Return a 429 ``rate_limit_error`` that tells the client when to try again."""
    seconds = max(1, math.ceil(retry_after))
    return ApiError("rate_limit_error", message, headers={"retry-after": str(seconds)})


class RequestsPerMinute:
    """A sliding one-minute window of calls per workspace.

    :param limit: most calls in any 60 seconds; ``None`` for no limit.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def reset(self) -> None:
        """Forget every call."""
        with self._lock:
            self._calls.clear()

    def admit(self, workspace: str, now: float) -> None:
        """Count one call at ``now``.

        :raises ApiError: 429 when the workspace made ``limit`` calls in the last minute.
        """
        if self.limit is None:
            return
        with self._lock:
            calls = self._calls.setdefault(workspace, deque())
            while calls and calls[0] <= now - WINDOW_SECONDS:
                calls.popleft()
            if len(calls) >= self.limit:
                raise rate_limited(
                    f"Number of requests has exceeded your per-minute rate limit ({self.limit} requests per "
                    "minute on the Message Batches endpoints); wait for retry-after seconds",
                    calls[0] + WINDOW_SECONDS - now,
                )
            calls.append(now)


def check_queue(
    limit: int | None, waiting: int, adding: int, retry_after: float = QUEUE_RETRY_SECONDS
) -> None:
    """Refuse a create that would put more than ``limit`` requests in the workspace's queue.

    :param limit: most requests waiting or in progress; ``None`` for no limit.
    :param waiting: requests of the workspace's batches that have not ended.
    :param adding: requests in the new batch.
    :param retry_after: seconds the refusal asks the client to wait (sent rounded up, at least 1).
    :raises ApiError: 429 ``rate_limit_error`` with ``retry-after``.
    """
    if limit is not None and waiting + adding > limit:
        raise rate_limited(
            f"Number of batch requests in the queue would exceed your limit: {waiting} waiting or in "
            f"progress plus {adding} new is over {limit}; wait for batches to end, or submit fewer requests",
            retry_after,
        )
