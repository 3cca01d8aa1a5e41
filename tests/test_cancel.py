"""The explicit cancel: it cancels exactly the batches one run (or pipeline) recorded, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.cancel import main
from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator

DAG_ID = "cancel_dag"


def submitted_shard(storage: str, run_id: str, pipeline_id: str, requests: int) -> str:
    """Write one shard in a run folder and submit it with the real operator; return its batch id."""
    folder = RunFolder.for_run(ObjectStoragePath(storage), DAG_ID, run_id, pipeline_id)
    lines = [
        orjson.dumps(
            {
                "custom_id": f"{pipeline_id}-{number}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"ticket {number} of {run_id}/{pipeline_id}"}],
                },
            }
        )
        for number in range(requests)
    ]
    path = folder.shard_requests(0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    shard = ShardDescriptor(
        run_uri=str(folder.root),
        round=0,
        index=0,
        uri=str(path),
        request_count=requests,
        body_bytes=batch_body_size(sum(map(len, lines)), requests),
    ).to_dict()
    return ClaudeBatchSubmitOperator(task_id="submit", shard=shard).execute(context={})["batch_id"]


@pytest.fixture
def batches(emulator: Any, tmp_path: Path) -> tuple[str, dict[tuple[str, str], str]]:
    """Four batches still processing: two runs, each with pipelines ``a`` and ``b``, all of one size."""
    emulator.faults({"processing_seconds": 120})
    storage = f"file://{tmp_path}/runs"
    made = {
        (run_id, pipeline): submitted_shard(storage, run_id, pipeline, requests=3)
        for run_id in ("run-1", "run-2")
        for pipeline in ("a", "b")
    }
    return storage, made


def cancel_started(emulator: Any, batch_id: str) -> bool:
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
    return client.messages.batches.retrieve(batch_id).cancel_initiated_at is not None


def test_cancel_of_one_pipeline_cancels_only_its_batch(emulator: Any, batches: Any, capsys: Any) -> None:
    storage, made = batches
    code = main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-1", "--pipeline-id", "a"])

    assert code == 0
    assert emulator.stats()["cancels"] == 1
    assert {key for key, batch_id in made.items() if cancel_started(emulator, batch_id)} == {("run-1", "a")}
    assert f"{made['run-1', 'a']}: cancel requested" in capsys.readouterr().out


def test_cancel_of_a_run_cancels_its_pipelines_and_nothing_of_another_run(
    emulator: Any, batches: Any
) -> None:
    storage, made = batches
    assert main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-2"]) == 0

    assert emulator.stats()["cancels"] == 2
    canceled = {key for key, batch_id in made.items() if cancel_started(emulator, batch_id)}
    assert canceled == {("run-2", "a"), ("run-2", "b")}


def test_list_cancels_nothing_and_an_unknown_run_has_nothing_to_cancel(
    emulator: Any, batches: Any, capsys: Any
) -> None:
    storage, made = batches
    assert main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-1", "--list"]) == 0
    listed = capsys.readouterr().out
    assert made["run-1", "a"] in listed
    assert made["run-1", "b"] in listed
    assert made["run-2", "a"] not in listed
    assert main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-9"]) == 0
    assert "no submitted shard" in capsys.readouterr().out
    assert emulator.stats()["cancels"] == 0


# --- cancel is a state of the run ----------------------------------------------------------------------


def shard_of(storage: str, run_id: str, index: int, requests: int) -> dict[str, Any]:
    """Write shard ``index`` of round 0 of pipeline ``p`` (and the round's shard list); return it."""

    folder = RunFolder.for_run(ObjectStoragePath(storage), DAG_ID, run_id, "p")
    lines = [
        orjson.dumps(
            {
                "custom_id": f"s{index}-{number}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"ticket {number} of shard {index}"}],
                },
            }
        )
        for number in range(requests)
    ]
    path = folder.shard_requests(0, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    shard = ShardDescriptor(
        run_uri=str(folder.root),
        round=0,
        index=index,
        uri=str(path),
        request_count=requests,
        body_bytes=batch_body_size(sum(map(len, lines)), requests),
    ).to_dict()
    listed = folder.shard_list(0)
    earlier = orjson.loads(listed.read_bytes()) if listed.exists() else []
    listed.write_bytes(orjson.dumps([*earlier, shard]))
    return shard


def test_a_cancel_stops_a_shard_waiting_after_a_429_and_says_what_it_stopped(
    make_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_claude_batch.compat import AirflowSkipException
    from airflow_claude_batch.core.run.cancel_record import is_canceled
    from airflow_claude_batch.core.submit.state import read_state

    full = make_emulator(queue_limit=4, queue_retry_after=30)
    full.faults({"processing_seconds": 120})
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", full.connection_json)
    storage = f"file://{tmp_path}/runs"
    first = shard_of(storage, "run-1", 0, requests=3)  # 3 requests and the marker fill the queue
    waiting = shard_of(storage, "run-1", 1, requests=3)
    batch_id = ClaudeBatchSubmitOperator(task_id="submit", shard=first).execute(context={})["batch_id"]
    paced = ClaudeBatchSubmitOperator(task_id="submit", shard=waiting, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        paced.execute(context={})  # refused with 429: the task waits for capacity, deferred
    folder = RunFolder.for_run(ObjectStoragePath(storage), DAG_ID, "run-1", "p")
    state = read_state(folder.shard_state(0, 1))
    assert state is not None
    assert (state.status, state.retry_at is not None) == ("failed", True)
    assert full.stats()["batches_created"] == 1

    code = main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-1"])

    out = capsys.readouterr().out
    assert code == 0
    assert f"p round 0 shard 0: {batch_id}: cancel requested" in out
    assert "p round 0 shard 1: stopped before create (waiting for capacity until" in out
    assert "p: round 1 and later stopped: no requeue round will be built" in out
    assert "stopped: 1 batch(es) cancelled, 1 shard(s) stopped before create" in out
    assert is_canceled(folder)
    # the waiting task wakes up (the cancelled batch freed the queue) and ends without creating
    with pytest.raises(AirflowSkipException, match="canceled on purpose"):
        paced.execute_complete(context={}, **deferred.value.kwargs)
    with pytest.raises(AirflowSkipException):
        ClaudeBatchSubmitOperator(task_id="submit", shard=waiting).execute(context={})  # a clear, too
    assert full.stats()["batches_created"] == 1  # spend after the cancel: 0

    assert main(["--storage", storage, "--dag-id", DAG_ID, "--run-id", "run-1", "--resume"]) == 0
    assert "p: cancel record removed" in capsys.readouterr().out
    assert not is_canceled(folder)
