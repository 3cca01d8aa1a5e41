"""The requeue core: the next round's shards from the original lines, dead letters, sync retry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.requests.sharding import ShardLimits
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.requeue_record import read_requeue_record
from airflow_claude_batch.core.requeue.sync_retry import SyncRequestError, SyncRetry
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import StorageError
from tests.core.batch_results import (
    MODEL,
    PRICES,
    canceled,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    succeeded,
    usage,
    write_shard,
)


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")


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


class FakeMessages:
    """Answers synchronous retries: ``a*`` succeed, ``busy*`` stay overloaded, ``bad*`` are invalid."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        prompt = params["messages"][0]["content"]
        self.calls.append(prompt)
        if prompt.startswith("busy"):
            raise SyncRequestError("overloaded_error", "still busy", "req_s")
        if prompt.startswith("bad"):
            raise SyncRequestError("invalid_request_error", "nope", "req_s")
        return {
            "model": MODEL,
            "content": [{"type": "text", "text": f"sync {prompt}"}],
            "stop_reason": "end_turn",
            "usage": usage(100, 10),
        }


def test_errored_requests_can_be_retried_synchronously_once_at_standard_prices(folder: RunFolder) -> None:
    # write_shard uses "hello" as every prompt; give each request its own prompt to steer the fake
    lines = [errored("a1"), errored("busy1"), errored("bad1"), expired("e1"), errored("x", "not_found_error")]
    shard = fanned_out_shard(folder, 0, lines)
    path = Path(str(folder.shard_requests(0, 0)))
    rewritten = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for request in rewritten:
        request["params"]["messages"][0]["content"] = request["custom_id"]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rewritten))

    send = FakeMessages()
    record = requeue_round(folder, 0, [shard], sync=SyncRetry(send, PRICES))

    assert sorted(send.calls) == ["a1", "bad1", "busy1"]  # not the expired, not the non-retryable
    rows = {row["custom_id"]: row for row in read_rows(folder.shard_sync_retry(0, 0))}
    assert rows["a1"]["outcome"] == "succeeded"
    assert rows["a1"]["price"] == "standard"
    assert rows["a1"]["text"] == "sync a1"
    assert rows["a1"]["cost_usd"] == pytest.approx((100 * 3 + 10 * 15) / 1e6)  # full price
    assert rows["busy1"]["outcome"] == "errored"
    assert rows["busy1"]["retryable"] is True
    requeued = [
        orjson.loads(line)["custom_id"]
        for line in Path(str(folder.shard_requests(1, 0))).read_bytes().splitlines()
    ]
    assert sorted(requeued) == ["busy1", "e1"]
    dead = {row["custom_id"]: row["reason"] for row in read_rows(folder.round_dead_letter(0))}
    assert set(dead) == {"x", "bad1"}
    assert dead["bad1"].startswith("on the synchronous retry")
    assert (record.sync_succeeded, record.requeued, record.dead_lettered) == (1, 2, 2)
    assert record.retry_errored_sync is True

    # a requeue that died after paying for those calls does not pay again
    (folder.round_dir(0) / "requeue.json").unlink()
    again = FakeMessages()
    assert requeue_round(folder, 0, [shard], sync=SyncRetry(again, PRICES)).sync_succeeded == 1
    assert again.calls == []
