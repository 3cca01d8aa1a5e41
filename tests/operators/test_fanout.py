"""The fanout operator in a real Airflow against the emulator: a cut download, then a rerun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator

RECORDS = 12
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "bug", "account"]}},
    "required": ["label"],
}

DAG_SOURCE = """
import json
import pathlib

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from tests.operators.batch_dag_support import submit_and_wait, write_round_0

STORAGE = {storage!r}
OUT = {out!r}
SCHEMA = {schema!r}

with DAG("fanout_cut_stream", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:

    @task
    def round_0():
        return write_round_0(STORAGE, get_current_context(), {records})

    @task
    def submitted(shard):
        return submit_and_wait(shard)

    fanout = ClaudeBatchFanoutOperator.partial(task_id="fanout", output_schema=SCHEMA).expand(
        shard=submitted.expand(shard=round_0())
    )

    @task
    def keep(results):
        pathlib.Path(OUT).write_text(json.dumps(list(results)))

    keep(fanout.output)
"""


def outcome_files(folder: RunFolder) -> dict[str, list[bytes]]:
    """Each outcome file's lines, sorted: results arrive in a different order on every download."""
    return {
        outcome: sorted(Path(str(folder.shard_outcome(0, 0, outcome))).read_bytes().splitlines())
        for outcome in ROW_OUTCOMES
    }


@pytest.mark.airflow
def test_a_cut_download_is_read_again_and_a_rerun_writes_the_same_files(
    run_dag: Any, emulator: Any, tmp_path: Path
) -> None:
    out = tmp_path / "fanout.json"
    dag_file = tmp_path / "fanout_cut_stream.py"
    dag_file.write_text(
        DAG_SOURCE.format(storage=f"file://{tmp_path}/runs", out=str(out), records=RECORDS, schema=SCHEMA)
    )
    emulator.faults({"cut_results_after_lines": 5})

    dag_run = run_dag(dag_file, "fanout_cut_stream")

    assert dag_run.state == "success"
    assert emulator.stats()["results_downloads"] == 2  # the cut one and the full one
    [descriptor] = json.loads(out.read_text())
    assert descriptor["outcome_counts"] == {
        "succeeded": RECORDS,
        "invalid_output": 0,
        "errored": 0,
        "expired": 0,
        "canceled": 0,
        "refused": 0,
        "unknown_ids": 0,
        "duplicates": 0,
    }
    assert descriptor["tokens"]["output"] > 0
    assert descriptor["cost_usd"] > 0
    folder = RunFolder(Path(descriptor["run_uri"].removeprefix("file://")))
    rows = [orjson.loads(line) for line in outcome_files(folder)["succeeded"]]
    assert sorted(row["custom_id"] for row in rows) == [f"t-{n:04d}" for n in range(RECORDS)]
    assert {row["parsed"]["label"] for row in rows} <= {"billing", "bug", "account"}
    assert sum(row["usage"]["output_tokens"] for row in rows) == descriptor["tokens"]["output"]
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(descriptor["cost_usd"], abs=1e-6)

    before = outcome_files(folder)
    again = ClaudeBatchFanoutOperator(task_id="rerun", shard=descriptor, output_schema=SCHEMA).execute(
        context={}
    )
    assert outcome_files(folder) == before
    assert again == descriptor
