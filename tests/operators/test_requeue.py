"""Requeue and report operators in a real Airflow against the emulator: two rounds, then the ledger.

One DAG run covers both: round 0 ends with expired and errored requests, the requeue builds round 1
from exactly the expired ones, round 1 runs, and the report's numbers are checked against the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

RECORDS = 20

DAG_SOURCE = """
import json
import pathlib

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from tests.operators.batch_dag_support import submit_and_wait, write_round_0

STORAGE = {storage!r}
OUT = {out!r}


def parse_label(text):
    return {{"label": json.loads(text)["label"]}}


with DAG("requeue_and_report", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:

    @task
    def round_0():
        return write_round_0(STORAGE, get_current_context(), {records})

    @task
    def submitted(shard):
        return submit_and_wait(shard)

    fanout_0 = ClaudeBatchFanoutOperator.partial(task_id="fanout_0", output_parser=parse_label).expand(
        shard=submitted.override(task_id="submitted_0").expand(shard=round_0())
    )
    requeue = ClaudeBatchRequeueOperator(task_id="requeue", shards=fanout_0.output, round_index=0)
    fanout_1 = ClaudeBatchFanoutOperator.partial(task_id="fanout_1", output_parser=parse_label).expand(
        shard=submitted.override(task_id="submitted_1").expand(shard=requeue.output)
    )
    report = ClaudeBatchReportOperator(
        task_id="report", storage=STORAGE, max_rounds=2, output_uri={output!r}
    )
    fanout_1 >> report

    @task
    def keep(next_shards, summary):
        pathlib.Path(OUT).write_text(json.dumps({{"next_shards": next_shards, "summary": summary}}))

    keep(requeue.output, report.output)
"""


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def ids(path: Path) -> list[str]:
    return sorted(orjson.loads(line)["custom_id"] for line in lines(path))


@pytest.mark.airflow
def test_expired_requests_are_requeued_and_the_report_agrees_with_the_files(
    run_dag: Any, emulator: Any, tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    output = tmp_path / "labels.jsonl"
    dag_file = tmp_path / "requeue_and_report.py"
    dag_file.write_text(
        DAG_SOURCE.format(
            storage=f"file://{tmp_path}/runs", out=str(out), records=RECORDS, output=f"file://{output}"
        )
    )
    emulator.faults({"expire_next": {"fraction": 0.3, "batches": 2}})
    emulator.faults({"error_next": {"fraction": 0.2, "batches": 1, "error_type": "invalid_request_error"}})

    dag_run = run_dag(dag_file, "requeue_and_report")

    assert dag_run.state == "success"
    result = json.loads(out.read_text())
    run = tmp_path / "runs" / "requeue_and_report" / dag_run.run_id / "claude_batch"
    round_0, round_1 = run / "round-0", run / "round-1"

    # round 1 holds exactly the expired requests of round 0, as their original lines
    expired_0 = ids(round_0 / "shard-00000" / "expired.jsonl")
    assert expired_0
    original = {
        orjson.loads(line)["custom_id"]: line for line in lines(round_0 / "shard-00000.requests.jsonl")
    }
    requeued = lines(round_1 / "shard-00000.requests.jsonl")
    assert sorted(orjson.loads(line)["custom_id"] for line in requeued) == expired_0
    assert all(line == original[orjson.loads(line)["custom_id"]] for line in requeued)
    assert result["next_shards"] == json.loads((round_1 / "shards.json").read_text())
    assert [shard["request_count"] for shard in result["next_shards"]] == [len(expired_0)]

    # non-retryable errors of round 0 are dead-lettered with their reason
    errored_0 = ids(round_0 / "shard-00000" / "errored.jsonl")
    assert errored_0
    assert ids(round_0 / "dead-letter.jsonl") == errored_0

    # the report's numbers are the files' lines
    manifest = json.loads((run / "manifest.json").read_text())
    succeeded = ids(round_0 / "shard-00000" / "succeeded.jsonl") + ids(
        round_1 / "shard-00000" / "succeeded.jsonl"
    )
    pending = ids(run / "pending.jsonl")
    assert pending, "round 1 ended with expired requests: the last round's unfinished are pending"
    assert pending == ids(round_1 / "shard-00000" / "expired.jsonl")
    assert ids(run / "dead-letter.jsonl") == errored_0
    assert manifest["dispositions"] == {
        "succeeded": len(succeeded),
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": len(errored_0),
        "pending": len(pending),
        "rejected": 0,
    }
    assert manifest["input_records"] == RECORDS
    assert manifest["reconciled"] is True
    assert len(manifest["batch_ids"]) == 2
    assert manifest["money"]["synchronous_equivalent_usd"] == pytest.approx(
        2 * manifest["money"]["actual_usd"]
    )
    assert ids(output) == sorted(succeeded)
    assert all(set(orjson.loads(line)) == {"custom_id", "label"} for line in lines(output))
    summary = result["summary"]
    assert summary["dispositions"] == manifest["dispositions"]
    assert summary["batches"] == 2
    assert summary["rounds"] == 2
    assert summary["files"]["report"].endswith("report.html")
    page = (run / "report.html").read_text()
    assert f">{RECORDS}<" in page
    assert "<svg" in page
