"""The records a finished run left pending, taken from its input so that they can be sent again.

A pending record was sent and never answered (it expired or kept failing after the last round, a budget
held it back, the run was canceled): sending it again pays for it once. The one exception is a
synchronous retry whose outcome is unknown (``sync_outcome_unknown``): the API may have answered and
billed it, so it is never picked. The records are written as JSON Lines, ready to be the input of a new
run (a custom input: the run's answers stay in its own run folder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from airflow_claude_batch.core.requests.sources import Record, RecordSource
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import PendingReason
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer, iter_jsonl
from airflow_claude_batch.exceptions import InputError


@dataclass(frozen=True)
class PendingPick:
    """What :func:`write_pending_records` did.

    :param written: records written, one per pending id found in the input.
    :param kept_back: pending ids never picked: their outcome is unknown and may have been billed.
    :param missing: pending ids the input no longer holds.
    """

    written: int
    kept_back: int
    missing: list[str]


def resendable_ids(folder: RunFolder) -> tuple[set[str], int]:
    """Return the ids of the run's ``pending.jsonl`` that may be sent again, and how many were kept back.

    :raises InputError: the run has no ``pending.jsonl`` (its report has not run).
    """
    if not folder.pending.exists():
        raise InputError(
            f"{folder.pending} does not exist: the run's report has not run yet; finish the run first"
        )
    ids, kept_back = set(), 0
    for row in iter_jsonl(folder.pending):
        if row.get("reason") == PendingReason.SYNC_OUTCOME_UNKNOWN:
            kept_back += 1
        else:
            ids.add(str(row["custom_id"]))
    return ids, kept_back


def write_pending_records(
    folder: RunFolder, source: RecordSource, id_field: str, out: StoragePath
) -> PendingPick:
    """Write the input records whose id the run left pending (and may send again) to ``out``, whole.

    :param folder: the finished run's folder.
    :param source: the run's input, read again.
    :param id_field: the record field that holds the id (the pipeline's ``custom_id_field``).
    :param out: where the records go (JSON Lines).
    """
    ids, kept_back = resendable_ids(folder)
    left = set(ids)
    written = 0
    with atomic_writer(out) as handle:
        for record in _records_with_ids(source, id_field, ids):
            handle.write(orjson.dumps(record) + b"\n")
            left.discard(str(record[id_field]))
            written += 1
    return PendingPick(written=written, kept_back=kept_back, missing=sorted(left))


def _records_with_ids(source: RecordSource, id_field: str, ids: set[str]) -> Iterator[Record]:
    for record, _location in source:
        value = record.get(id_field)
        if value is not None and str(value) in ids:
            yield record
