"""Reading the files of a round that the build, the requeue and the report share, beside its shards.

Their paths are the run folder's (``RunFolder.shard_list``, ``requeue_record``, ``budget_held``,
``shard_sync_retry``); this module reads a round's shard list and copies an earlier requeue's rows.
"""

from __future__ import annotations

from typing import IO

import orjson

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, iter_jsonl, read_json
from airflow_claude_batch.exceptions import StorageError


def read_shard_list(folder: RunFolder, round_index: int) -> list[ShardDescriptor] | None:
    """Return a round's descriptors from ``round-r/shards.json``; ``None`` when the round does not exist."""
    data = read_json(folder.shard_list(round_index))
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
