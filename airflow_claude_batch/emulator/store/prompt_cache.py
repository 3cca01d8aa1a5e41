"""The prompt cache: entries per workspace, model prefix and lifetime, used in processing order.

An entry is usable only by a request processed after the request that wrote it, and only while its
lifetime (5 minutes or 1 hour since its last use) lasts; 5-minute and 1-hour entries of the same prefix
are kept apart. Batches are processed lazily, when a read finds them ended, so uses arrive out of time
order: each entry keeps the times of all its uses and a request looks only at uses before its own.
A request that finds a live entry reads it with probability ``hit_rate`` (the batch docs: cache hits
in batches are best effort); otherwise it writes the prefix again.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort

from airflow_claude_batch.emulator.store.digests import TTL_SECONDS, RequestDigest


class PromptCache:
    """Cache entries and their uses.

    :param hit_rate: share of requests with a live entry that read it.
    """

    def __init__(self, hit_rate: float) -> None:
        self.hit_rate = hit_rate
        self._lock = threading.Lock()
        self._uses: dict[tuple[str, str, bytes], list[float]] = {}

    def reset(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._uses.clear()

    def use(self, workspace: str, digest: RequestDigest, at: float, draw: float) -> str | None:
        """Record a request's use of its prefix; return ``"read"``, ``"write"`` or ``None``.

        :param workspace: the caller's workspace (a hash of its key).
        :param digest: the request; ``None`` is returned when it has no cacheable prefix.
        :param at: when the request is processed.
        :param draw: a number in [0, 1) fixed for this request; below ``hit_rate`` a live entry is read.
        """
        if digest.cache_key is None or digest.cache_ttl is None:
            return None
        key = (workspace, digest.cache_ttl, digest.cache_key)
        with self._lock:
            uses = self._uses.setdefault(key, [])
            before = bisect_left(uses, at)
            live = before > 0 and at - uses[before - 1] <= TTL_SECONDS[digest.cache_ttl]
            insort(uses, at)
        return "read" if live and draw < self.hit_rate else "write"
