"""The files of a round that the build, the requeue and the report share, beside its shards.

- ``round-r/shards.json``: the round's shard descriptors, written last by the build or the requeue;
- ``round-r/requeue.json``: what the requeue of the round decided, written last;
- ``round-r/budget-held.jsonl``: pending rows of requests the budget kept from being sent;
- ``round-r/shard-nnnnn/sync_retry.jsonl``: a shard's synchronous retries.
"""

from __future__ import annotations

from typing import IO

import orjson

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, iter_jsonl, read_json
from airflow_claude_batch.exceptions import StorageError

SYNC_RETRY_FILE = "sync_retry.jsonl"
REQUEUE_RECORD_FILE = "requeue.json"
SHARD_LIST_FILE = "shards.json"
BUDGET_HELD_FILE = "budget-held.jsonl"


def sync_retry_path(folder: RunFolder, round_index: int, shard_index: int) -> StoragePath:
    """Return the shard's ``sync_retry.jsonl`` (beside its outcome files)."""
    return folder.shard_outcome(round_index, shard_index, "succeeded").parent / SYNC_RETRY_FILE


def requeue_record_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/requeue.json``, written last by the requeue of round ``r``."""
    return folder.round_dir(round_index) / REQUEUE_RECORD_FILE


def budget_held_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/budget-held.jsonl``: pending rows of requests the budget kept from being sent."""
    return folder.round_dir(round_index) / BUDGET_HELD_FILE


def shard_list_path(folder: RunFolder, round_index: int) -> StoragePath:
    """Return ``round-r/shards.json``: the round's shard descriptors."""
    return folder.round_dir(round_index) / SHARD_LIST_FILE


def read_shard_list(folder: RunFolder, round_index: int) -> list[ShardDescriptor] | None:
    """Return a round's descriptors from ``round-r/shards.json``; ``None`` when the round does not exist."""
    data = read_json(shard_list_path(folder, round_index))
    if data is None:
        return None
    return [ShardDescriptor.from_dict(item) for item in data]


def copy_rows(path: StoragePath, count: int, out: IO[bytes]) -> None:
    """Copy the first ``count`` rows of ``path`` (an earlier requeue's, of the round) to ``out``.

    :raises StorageError: ``path`` holds fewer rows than the record counts.
    """
    copied = 0
    if count > 0:
        for row in iter_jsonl(path):
            out.write(orjson.dumps(row) + b"\n")
            copied += 1
            if copied == count:
                break
    if copied != count:
        raise StorageError(
            f"{path} holds {copied} rows but the round's requeue record counts {count}; the round's files "
            "do not belong together: restore the file, or clear the round's requeue"
        )
