"""The flat output: one row per succeeded record of a run, JSONL or CSV, joinable by ``custom_id``."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from airflow_claude_batch.core.requests.passthrough import load_passthrough, with_passthrough
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import Outcome
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer, iter_jsonl


def iter_succeeded_rows(folder: RunFolder, max_rounds: int) -> Iterator[dict[str, Any]]:
    """Yield every succeeded row of the run: the answers reused from the answer store
    (``reused.jsonl``), then each round's ``succeeded.jsonl``, then its synchronous retries that
    succeeded."""
    yield from iter_reused_rows(folder)
    for round_index in range(max_rounds):
        shards = read_shard_list(folder, round_index)
        if shards is None:
            return
        for shard in shards:
            path = folder.shard_outcome(round_index, shard.index, Outcome.SUCCEEDED)
            if path.exists():
                yield from iter_jsonl(path)
            sync_path = folder.shard_sync_retry(round_index, shard.index)
            if sync_path.exists():
                for row in iter_jsonl(sync_path):
                    if row.get("outcome") == Outcome.SUCCEEDED:
                        yield row


def iter_reused_rows(folder: RunFolder, chunk: int = 50_000) -> Iterator[dict[str, Any]]:
    """Yield the run's reused rows (``reused.jsonl``) with their records' passthrough fields, which the
    build wrote apart; the fields are read for ``chunk`` rows at a time, so memory stays bounded."""
    path = folder.reused
    if not path.exists():
        return
    rows = iter_jsonl(path)
    while batch := list(itertools.islice(rows, chunk)):
        carried = load_passthrough(folder, (row["custom_id"] for row in batch))
        for row in batch:
            yield dict(with_passthrough(row, carried))


def flat_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the joinable form of a succeeded row: ``custom_id`` plus the parsed fields, or ``text``.

    A parsed value that is not an object is kept under ``parsed``; a parsed field called ``custom_id``
    gives way to the record's id. The record's ``passthrough`` fields come after ``custom_id`` (a parsed
    field of the same name wins).
    """
    parsed = row.get("parsed")
    carried = row.get("passthrough") or {}
    if parsed is None:
        return {"custom_id": row["custom_id"], **carried, "text": row.get("text", "")}
    if isinstance(parsed, Mapping):
        return {**carried, **parsed, "custom_id": row["custom_id"]}
    return {"custom_id": row["custom_id"], **carried, "parsed": parsed}


def write_flat_output(
    folder: RunFolder,
    target: StoragePath,
    *,
    max_rounds: int,
    rows: Callable[[], Iterator[dict[str, Any]]] | None = None,
) -> int:
    """Write one row per succeeded record: JSONL, or CSV when ``target``'s name ends in ``.csv``.

    CSV reads the succeeded rows twice (once for the columns), so memory stays one row; nested values
    are written as JSON text.

    :returns: the number of rows written.
    """
    source = rows or (lambda: iter_succeeded_rows(folder, max_rounds))
    if target.name.lower().endswith(".csv"):
        return _write_csv(target, source)
    count = 0
    with atomic_writer(target) as out:
        for row in source():
            out.write(orjson.dumps(flat_record(row)) + b"\n")
            count += 1
    return count


def _write_csv(target: StoragePath, source: Callable[[], Iterator[dict[str, Any]]]) -> int:
    columns: dict[str, None] = {"custom_id": None}
    for row in source():
        columns.update(dict.fromkeys(flat_record(row)))
    count = 0
    with atomic_writer(target) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in source():
            writer.writerow({key: _csv_cell(value) for key, value in flat_record(row).items()})
            count += 1
        text.flush()
        text.detach()
    return count


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return value
