"""Input columns carried through to the output rows, so results join back to their inputs.

``passthrough_fields=["title", "expected"]`` makes the build write ``passthrough.jsonl`` in the run
folder: one line per record, ``{"custom_id": ..., "fields": {"title": ..., "expected": ...}}`` (a field
the record lacks is ``null``). The fanout (and a synchronous retry) adds the record's fields to every
row it writes under ``passthrough``, and the flat output puts them beside ``custom_id``.

Memory: the fanout holds the fields of its shard's records only (it reads the file once per shard),
so keep passthrough fields small (a label, a title), not documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from airflow_claude_batch.core.requests.sources import RecordSource
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import atomic_writer, iter_jsonl
from airflow_claude_batch.exceptions import InputError


def parse_fields(value: Any) -> tuple[str, ...]:
    """Read ``passthrough_fields``: a list of field names (or one name, or comma-separated text)."""
    if value is None or value == "" or value == "None":
        return ()
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name for name in names):
        raise InputError(f"passthrough_fields must be a list of record field names, got {value!r}")
    return tuple(names)


def write_passthrough(
    folder: RunFolder, source: RecordSource, custom_id_field: str, fields: Sequence[str]
) -> int:
    """Write the named fields of every record of ``source`` to ``passthrough.jsonl``.

    :return: the number of lines written.
    """
    count = 0
    with atomic_writer(folder.passthrough) as out:
        for record, _ in source:
            custom_id = record.get(custom_id_field)
            carried = {name: record.get(name) for name in fields}
            out.write(orjson.dumps({"custom_id": str(custom_id), "fields": carried}, default=str) + b"\n")
            count += 1
    return count


def load_passthrough(folder: RunFolder, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]] | None:
    """Return ``{custom_id: fields}`` for ``ids`` (all when ``None``), or ``None`` when the run has none."""
    path = folder.passthrough
    if not path.exists():
        return None
    wanted = None if ids is None else set(ids)
    return {
        row["custom_id"]: row["fields"]
        for row in iter_jsonl(path)
        if wanted is None or row["custom_id"] in wanted
    }


def with_passthrough(
    row: Mapping[str, Any], carried: Mapping[str, dict[str, Any]] | None
) -> Mapping[str, Any]:
    """Return ``row`` with its record's fields under ``passthrough`` (unchanged without any)."""
    if not carried:
        return row
    fields = carried.get(row["custom_id"])
    return row if fields is None else {**row, "passthrough": fields}
