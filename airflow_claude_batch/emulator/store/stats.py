"""Counters of what the emulator was asked, for tests that prove a shard is submitted at most once, and
of the calls it refused with 429: ``rpm_limited`` (over the per-minute limit; not counted as the call)
and ``queue_limited`` (a create over the queue limit; counted in ``creates_received`` too)."""

from __future__ import annotations

import threading
from typing import Any

COUNTERS = (
    "creates_received",
    "batches_created",
    "retrieves",
    "lists",
    "cancels",
    "deletes",
    "results_downloads",
    "count_tokens",
    "messages",
    "models",
    "auth_failures",
    "faults_fired",
    "rpm_limited",
    "queue_limited",
)


class Stats:
    """Thread-safe counters plus the size of the last create body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Set every counter back to 0."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._last_create_body_bytes = 0

    def add(self, counter: str, amount: int = 1) -> None:
        """Add ``amount`` to ``counter`` (one of :data:`COUNTERS`)."""
        with self._lock:
            self._counts[counter] += amount

    def record_create_body(self, size: int) -> None:
        """Remember the byte size of the create body just received."""
        with self._lock:
            self._last_create_body_bytes = size

    def snapshot(self) -> dict[str, Any]:
        """Return every counter and ``last_create_body_bytes`` as a plain dict."""
        with self._lock:
            return {**self._counts, "last_create_body_bytes": self._last_create_body_bytes}
