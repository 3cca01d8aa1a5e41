"""Unique custom_ids across a run, in 64-bit digests (8 bytes an id).

A digest match is confirmed by looking back through the input, so the error names both records and a
digest collision is never taken for a duplicate.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from contextlib import closing

from airflow_claude_batch.core.requests.sources import Record, RecordSource
from airflow_claude_batch.exceptions import InputError

_DIGEST_MASK = (1 << 64) - 1


class DigestSet:
    """A set of non-zero 64-bit digests in one flat array (8 bytes a slot, at most 60 % full).

    A million ids take 16 MiB, against about 75 MiB for a Python ``set`` of the same integers.
    """

    def __init__(self, slots_log2: int = 16) -> None:
        self._table = array("Q", bytes(8 << slots_log2))
        self._mask = (1 << slots_log2) - 1
        self._count = 0
        self._limit = int(len(self._table) * 0.6)

    def __len__(self) -> int:
        return self._count

    def add(self, digest: int) -> bool:
        """Add ``digest`` (non-zero); return ``False`` when it was already there."""
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            held = table[slot]
            if held == 0:
                break
            if held == digest:
                return False
            slot = (slot + 1) & mask
        table[slot] = digest
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._table
        slots_log2 = int(math.log2(len(old))) + 1
        self._table = array("Q", bytes(8 << slots_log2))
        self._mask = (1 << slots_log2) - 1
        self._limit = int(len(self._table) * 0.6)
        self._count = 0
        for digest in old:
            if digest:
                self.add(digest)


def id_digest(custom_id: str) -> int:
    """A non-zero 64-bit digest of an id (stable within one process, which is all uniqueness needs)."""
    return (hash(custom_id) & _DIGEST_MASK) or 1


def raise_if_used_before(
    source: RecordSource,
    custom_id_of: Callable[[Record, str], str],
    custom_id: str,
    location: str,
    position: int,
) -> None:
    """Raise the error for an id whose digest was seen before, naming the first use.

    :param source: the records (read again from the start, up to ``position``).
    :param custom_id_of: the id of a record at a location (the renderer's).
    :param custom_id: the id whose digest repeated.
    :param location: where that record is.
    :param position: how many records came before it.
    :raises InputError: when an earlier record has the same id (a digest collision between two
        different ids is not a duplicate and raises nothing).
    """
    if iter(source) is source:  # a one-shot iterator cannot be read again to name the first use
        raise InputError(
            f"custom_id {custom_id!r} is used by an earlier record too; custom_ids must be unique "
            "across the whole run (every file), remove or renumber the duplicate",
            location=location,
            rule="duplicate_custom_id",
        )
    with closing(iter(source)) as earlier:
        for index, (record, earlier_location) in enumerate(earlier):
            if index >= position:
                return  # a digest collision between two different ids: not a duplicate
            try:
                earlier_id = custom_id_of(record, earlier_location)
            except InputError:
                continue  # an earlier record without a valid id (rejected with on_invalid_record='skip')
            if earlier_id == custom_id:
                raise InputError(
                    f"custom_id {custom_id!r} is used twice, first at {earlier_location}; custom_ids must "
                    "be unique across the whole run (every file), remove or renumber the duplicate",
                    location=location,
                    rule="duplicate_custom_id",
                )
