"""The deployment checks' own judgements: they must pass a good run and fail a bad one.

Uses moto's in-process S3 for the object store; no Airflow process and no browser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import pytest
from moto import mock_aws

from airflow_claude_batch.core.run.layout import RunFolder
from deploy.airflow_api import CheckFailed, RunObservation, ti_key
from deploy.checks import (
    NIGHTLY_DAG_ID,
    NIGHTLY_PIPELINE_ID,
    PromisedForm,
    S3Location,
    check_nightly_outputs,
    check_quiet_logs,
    check_run_succeeded,
    deferrable_tasks,
    run_day,
)

LOCATION = S3Location("claude-batch", "nightly")
RUN = {
    "dag_run_id": "scheduled__2026-11-22T18:00:00+00:00",
    "data_interval_end": "2026-11-23T18:00:00Z",
    "run_after": "2026-11-23T18:00:00Z",
    "state": "success",
}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=LOCATION.bucket)
        yield client


def manifest(records: int = 3, shards: int = 1, batch_ids: list[str] | None = None) -> dict[str, Any]:
    return {
        "reconciled": True,
        "input_records": records,
        "dispositions": {"succeeded": records, "invalid_output": 0, "dead_lettered": 0, "pending": 0},
        "rounds": [{"round": 0, "shards": shards}],
        "batch_ids": batch_ids if batch_ids is not None else [f"msgbatch_{i}" for i in range(shards)],
        "money": {"actual_usd": 0.01, "savings_usd": 0.01},
    }


def store_outputs(s3: Any, manifest_doc: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    folder = RunFolder.for_run(
        PurePosixPath(LOCATION.prefix), NIGHTLY_DAG_ID, RUN["dag_run_id"], NIGHTLY_PIPELINE_ID
    )
    s3.put_object(Bucket=LOCATION.bucket, Key=str(folder.manifest), Body=json.dumps(manifest_doc))
    s3.put_object(Bucket=LOCATION.bucket, Key=str(folder.report), Body="<html><svg></svg></html>")
    body = "\n".join(json.dumps(row) for row in labels)
    s3.put_object(Bucket=LOCATION.bucket, Key=f"{LOCATION.prefix}/labels/2026-11-23.jsonl", Body=body)


def labels(count: int, label: str = "billing") -> list[dict[str, Any]]:
    return [{"custom_id": f"tkt-{i}", "label": label, "confidence": 0.9} for i in range(count)]


def test_outputs_that_add_up_pass(s3: Any) -> None:
    store_outputs(s3, manifest(), labels(3))
    summary = check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 1, "retrieves": 4}, 3)
    assert summary["labels_rows"] == 3
    assert summary["shards"] == summary["batches_created"] == 1
    assert summary["labels"] == "s3://claude-batch/nightly/labels/2026-11-23.jsonl"


def test_a_second_batch_for_one_shard_fails(s3: Any) -> None:
    store_outputs(s3, manifest(), labels(3))
    with pytest.raises(CheckFailed, match="created 2 batches for 1 shards"):
        check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 2}, 3)


def test_a_labels_file_short_of_the_manifest_fails(s3: Any) -> None:
    store_outputs(s3, manifest(), labels(2))
    with pytest.raises(CheckFailed, match="labels file has 2 rows"):
        check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 1}, 3)


def test_an_unknown_label_fails(s3: Any) -> None:
    store_outputs(s3, manifest(), labels(3, label="spam"))
    with pytest.raises(CheckFailed, match="known label"):
        check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 1}, 3)


def test_a_manifest_counting_other_records_fails(s3: Any) -> None:
    store_outputs(s3, manifest(records=3), labels(3))
    with pytest.raises(CheckFailed, match="not 4"):
        check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 1}, 4)


def test_missing_outputs_are_named(s3: Any) -> None:
    with pytest.raises(CheckFailed, match=r"manifest\.json is missing"):
        check_nightly_outputs(s3, LOCATION, RUN, {"batches_created": 1}, 3)


def test_run_day_is_the_end_of_the_data_interval_else_the_queue_time() -> None:
    assert run_day(RUN) == "2026-11-23"
    assert run_day({"data_interval_end": None, "run_after": "2026-11-24T00:10:27.8+00:00"}) == "2026-11-24"


def ti(task_id: str, state: str = "success", try_number: int = 1, map_index: int = -1) -> dict[str, Any]:
    return {"task_id": task_id, "state": state, "try_number": try_number, "map_index": map_index}


def test_a_run_with_a_retried_task_fails() -> None:
    observation = RunObservation(run={"dag_run_id": "r", "state": "success"})
    check_run_succeeded(observation, [ti("a"), ti("b", "skipped", 0)])
    with pytest.raises(CheckFailed, match=r"a \(try 2\)"):
        check_run_succeeded(observation, [ti("a", try_number=2)])


def test_a_failed_run_fails_naming_its_tasks() -> None:
    observation = RunObservation(run={"dag_run_id": "r", "state": "failed"})
    with pytest.raises(CheckFailed, match=r"\['x\.build'\]"):
        check_run_succeeded(observation, [ti("x.build", "failed")])


def test_the_wait_tasks_are_the_ones_that_must_defer() -> None:
    instances = [
        ti("g.round_0.wait", map_index=0),
        ti("g.round_0.wait", map_index=1),
        ti("g.round_1.wait", "skipped"),
        ti("g.build"),
    ]
    assert [ti_key(t) for t in deferrable_tasks(NIGHTLY_DAG_ID, instances)] == [
        "g.round_0.wait[0]",
        "g.round_0.wait[1]",
    ]
    with pytest.raises(CheckFailed, match="nothing was deferred"):
        deferrable_tasks(NIGHTLY_DAG_ID, [ti("g.build")])


def test_the_promised_connection_form_comes_from_the_provider_info() -> None:
    form = PromisedForm.from_provider_info()
    assert form.type_name == "Claude Message Batches"
    assert form.standard_labels == ("Base URL", "API key")
    assert {"Schema", "Port", "Login", "Host", "Password"} == set(form.hidden_labels)
    assert "Request timeout (seconds)" in form.extra_labels
    assert "Workspace ID" in form.extra_labels
    assert len(form.extra_labels) == 5


def test_logs_without_connection_warnings_pass_and_a_warned_line_fails(tmp_path: Path) -> None:
    (tmp_path / "scheduler.log").write_text("INFO scheduler started\n")
    (tmp_path / "dag_id=x" / "run_id=y").mkdir(parents=True)
    task_log = tmp_path / "dag_id=x" / "run_id=y" / "attempt=1.log"
    task_log.write_text('{"event": "Task started"}\n')
    assert check_quiet_logs([tmp_path]) == 2

    task_log.write_text("Connection schemes (type: claude_batch) shall not contain '_'.\n")
    with pytest.raises(CheckFailed, match=r"attempt=1\.log"):
        check_quiet_logs([tmp_path])
