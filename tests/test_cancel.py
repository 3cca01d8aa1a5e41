"""The explicit cancel: it cancels exactly the batches one run (or pipeline) recorded, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.batch.limits import batch_body_size
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.shards import ShardDescriptor
from airflow_claude_batch.cancel import main
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
