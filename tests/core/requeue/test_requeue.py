"""The requeue core: the next round's shards from the original lines, dead letters, sync retry."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.requests.sharding import ShardLimits
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.requeue_record import read_requeue_record
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import StorageError
from tests.core.batch_results import (
    canceled,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    succeeded,
    write_shard,
)


def original_lines(folder: RunFolder, round_index: int, index: int) -> dict[str, bytes]:
    raw = Path(str(folder.shard_requests(round_index, index))).read_bytes().splitlines(keepends=True)
    return {orjson.loads(line)["custom_id"]: line for line in raw}


def test_the_next_round_holds_exactly_the_requeueable_original_lines(folder: RunFolder) -> None:
    shards = [
        fanned_out_shard(
            folder,
            0,
            [succeeded("a"), expired("b"), errored("c", "api_error"), errored("d", "not_found_error")],
        ),
        fanned_out_shard(folder, 1, [canceled("e"), succeeded("f"), expired("g")]),
    ]
    record = requeue_round(folder, 0, shards)

    originals = {**original_lines(folder, 0, 0), **original_lines(folder, 0, 1)}
    assert [s["round"] for s in record.next_shards] == [1]
    next_lines = Path(str(folder.shard_requests(1, 0))).read_bytes().splitlines(keepends=True)
    assert next_lines == [originals["b"], originals["c"], originals["e"], originals["g"]]
    assert record.next_shards[0]["request_count"] == 4
    assert record.next_shards[0]["body_bytes"] == len(b"".join(next_lines)) - 4 + len(b'{"requests":[]}') + 3
    assert (record.requeued, record.dead_lettered, record.held) == (4, 1, 0)
    dead = read_rows(folder.round_dead_letter(0))
    assert dead == [
        {
            "custom_id": "d",
            "round": 0,
            "reason": dead[0]["reason"],
            "error_type": "not_found_error",
            "message": "busy",
        }
    ]
    assert "non-retryable error not_found_error" in dead[0]["reason"]
    listed = orjson.loads(Path(str(folder.round_dir(1) / "shards.json")).read_bytes())
    assert listed == record.next_shards


def test_canceled_requests_of_a_batch_cancelled_on_purpose_are_held(folder: RunFolder) -> None:
    shard = fanned_out_shard(
        folder, 0, [canceled("a"), canceled("b")], cancel_initiated_at="2026-01-01T00:00:00Z"
    )
    record = requeue_round(folder, 0, [shard])
    assert (record.requeued, record.held, record.next_shards) == (0, 2, [])
    assert read_rows(folder.round_dead_letter(0)) == []


def test_the_next_round_is_split_by_the_shard_limits(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [expired(f"r{i}") for i in range(5)])
    record = requeue_round(folder, 0, [shard], limits=ShardLimits(max_requests=2))
    assert [s["request_count"] for s in record.next_shards] == [2, 2, 1]
    assert [s["index"] for s in record.next_shards] == [0, 1, 2]


def test_a_rerun_returns_the_first_result_and_rewrites_nothing(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [expired("a"), succeeded("b")])
    first = requeue_round(folder, 0, [shard])
    next_file = Path(str(folder.shard_requests(1, 0)))
    before = next_file.stat().st_mtime_ns
    # even if the outcome files changed since, a requeued round stays as it was
    fanned_out_shard(folder, 0, [succeeded("a"), succeeded("b")])
    again = requeue_round(folder, 0, [shard])
    assert again == first
    assert next_file.stat().st_mtime_ns == before


def test_nothing_to_requeue_gives_no_shards(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [succeeded("a")])
    record = requeue_round(folder, 0, [shard])
    assert record.next_shards == []
    assert orjson.loads(Path(str(folder.round_dir(1) / "shards.json")).read_bytes()) == []
    assert read_requeue_record(folder, 0) == record


def test_a_shard_without_fanout_files_stops_the_requeue(folder: RunFolder) -> None:
    shard = write_shard(folder, 0, 0, ["a"])
    with pytest.raises(StorageError, match="fanout did not finish"):
        requeue_round(folder, 0, [shard])
    assert read_requeue_record(folder, 0) is None
