"""Reconciling a results stream with its shard: which result line is the first for a request.

Every request of the shard gets exactly one row. Lines for ids the shard does not hold and repeated
lines for an id are counted and left out; the ids without any line are the shortfall. Memory holds the
shard's ids (never the whole run's) and counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Reconciler:
    """Say, for each result line, whether it is the first for a request of the shard.

    The stream may be downloaded again from the start after a cut (``begin_attempt``): a line for an id
    already seen in an earlier attempt is a replay and skipped silently, while a second line for an id
    within one attempt is a duplicate and counted. Results come in arbitrary order, so no position is
    trusted across attempts.

    :param expected_ids: the custom_ids of the shard's requests (never the whole run).
    """

    def __init__(self, expected_ids: Iterable[str]) -> None:
        # id -> the attempt in which it was last seen (0: not yet)
        self._seen: dict[str, int] = dict.fromkeys(expected_ids, 0)
        self._unknown: dict[str, int] = {}
        self._repeats: dict[str, int] = {}
        self._extra: dict[str, int] = {}
        self.attempt = 1
        self.accepted = 0

    @property
    def expected(self) -> int:
        return len(self._seen)

    def ids(self) -> Iterable[str]:
        """The shard's custom_ids."""
        return self._seen.keys()

    def begin_attempt(self) -> None:
        """Start reading the stream again from its beginning."""
        self.attempt += 1
        self._repeats.clear()

    def accept(self, custom_id: Any) -> bool:
        """Return ``True`` when this line is the first for a request of the shard (write it)."""
        if not isinstance(custom_id, str):
            custom_id = repr(custom_id)
        book = self._seen if custom_id in self._seen else self._unknown
        previous = book.get(custom_id, 0)
        book[custom_id] = self.attempt
        if previous == 0:
            if book is self._seen:
                self.accepted += 1
                return True
            return False
        if previous == self.attempt:
            self._count_repeat(custom_id)
        return False

    def _count_repeat(self, custom_id: str) -> None:
        # the largest number of extra lines seen for this id in any one attempt
        repeats = self._repeats.get(custom_id, 0) + 1
        self._repeats[custom_id] = repeats
        if repeats > self._extra.get(custom_id, 0):
            self._extra[custom_id] = repeats

    @property
    def unknown_ids(self) -> int:
        """Distinct ids in the stream that the shard does not hold."""
        return len(self._unknown)

    @property
    def duplicates(self) -> int:
        """Result lines beyond the first for one id, within one reading of the stream."""
        return sum(self._extra.values())

    def unknown_sample(self, limit: int = 5) -> list[str]:
        return list(self._unknown)[:limit]

    def missing(self, limit: int | None = None) -> list[str]:
        """Ids of the shard that no line accounted for (up to ``limit``)."""
        found: list[str] = []
        for custom_id, attempt in self._seen.items():
            if attempt == 0:
                found.append(custom_id)
                if limit is not None and len(found) >= limit:
                    break
        return found
