"""The report operator in a real Airflow: a run folder written by the core, then the report task.

The run's rounds come from synthetic result lines (the emulator is exercised by the fanout and requeue
tests); this test checks what the task adds: the run folder from the context, a prices file, a CSV
output, the XCom summary and an escaped page.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

DAG_SOURCE = """
import json
import pathlib

import pendulum
from airflow.sdk import DAG, Asset, ObjectStoragePath, get_current_context, task

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import write_json
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from tests.core.batch_results import errored, expired, fanned_out_shard, succeeded, write_shard_list

STORAGE = {storage!r}
OUT = {out!r}
LABELS = Asset(name="report_only_labels")

with DAG("report_only", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:

    @task
    def one_round():
        context = get_current_context()
        folder = RunFolder.for_run(
            ObjectStoragePath(STORAGE), context["ti"].dag_id, context["run_id"], "claude_batch"
        )
        write_json(folder.estimate, {{"records": 4, "estimated_cost_usd_upper": 0.02}})
        lines = [
            succeeded("a", '{{"label": "bug"}}'),
            succeeded("b", "plain text"),
            errored("c", "invalid_request_error", "<script>alert(1)</script>"),
            expired("d"),
        ]
        write_shard_list(folder, 0, [fanned_out_shard(folder, 0, lines)])

    report = ClaudeBatchReportOperator(
        task_id="report",
        storage=STORAGE,
        max_rounds=1,
        prices_file={prices!r},
        output_uri="{{{{ params.out_dir }}}}/labels.csv",
        params={{"out_dir": {out_dir!r}}},
        outlets=[LABELS],
    )
    one_round() >> report

    @task
    def keep(summary):
        pathlib.Path(OUT).write_text(json.dumps(summary))

    keep(report.output)


# What a downstream DAG sees of the report's Asset event.
with DAG("report_reader", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as reader:

    @task(inlets=[LABELS])
    def read_event(*, inlet_events):
        event = inlet_events[LABELS][-1]
        pathlib.Path(OUT).with_name("event.json").write_text(json.dumps(event.extra))

    read_event()
"""


@pytest.mark.airflow
def test_the_report_task_writes_the_run_files_and_returns_a_small_summary(
    run_dag: Any, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    # twice the shipped standard price of the test model, so the money must come from this file
    prices.write_text(json.dumps({"models": {"claude-sonnet-4-6": {"input": 6.0, "output": 30.0}}}))
    out = tmp_path / "summary.json"
    dag_file = tmp_path / "report_only.py"
    dag_file.write_text(
        DAG_SOURCE.format(
            storage=f"file://{tmp_path}/runs",
            out=str(out),
            prices=str(prices),
            out_dir=f"file://{tmp_path}/out",
        )
    )

    dag_run = run_dag(dag_file, "report_only")

    assert dag_run.state == "success"
    summary = json.loads(out.read_text())
    run = tmp_path / "runs" / "report_only" / dag_run.run_id / "claude_batch"
    assert summary["run_uri"] == f"file://{run}"
    assert summary["dispositions"] == {
        "succeeded": 2,
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": 1,
        "pending": 1,
        "rejected": 0,
    }
    assert summary["reconciled"] is True
    # two answers of 100 input and 10 output tokens at $6 / $30 per million, half price in a batch
    assert summary["actual_cost_usd"] == pytest.approx(2 * 0.5 * (100 * 6 + 10 * 30) / 1e6)
    assert summary["savings_usd"] == pytest.approx(summary["actual_cost_usd"])
    assert summary["estimated_cost_usd_upper"] == 0.02
    assert summary["files"]["output"] == f"file://{tmp_path}/out/labels.csv"
    assert summary["files"]["manifest"] == f"file://{run}/manifest.json"
    assert len(json.dumps(summary)) < 2000

    with (tmp_path / "out" / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"custom_id": "a", "text": '{"label": "bug"}'}, {"custom_id": "b", "text": "plain text"}]
    page = (run / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["files"]["output"] == summary["files"]["output"]
    assert manifest["price_sources"][-1] == str(prices)

    run_dag(dag_file, "report_reader")
    extra = json.loads((tmp_path / "event.json").read_text())
    assert extra["outcomes"] == summary["dispositions"]
    assert extra["actual_cost_usd"] == pytest.approx(summary["actual_cost_usd"])
    assert extra["savings_usd"] == pytest.approx(summary["savings_usd"])
    assert extra["manifest_uri"] == f"file://{run}/manifest.json"
    assert extra["output_uri"] == f"file://{tmp_path}/out/labels.csv"
    assert extra["input_records"] == 4
    assert extra["reconciled"] is True


@pytest.mark.airflow
def test_a_run_over_its_failure_threshold_fails_and_says_why_without_an_asset_event(
    run_dag: Any, tmp_path: Path
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    source = DAG_SOURCE.replace(
        "        max_rounds=1,\n",
        '        max_rounds=1,\n        max_dead_letter_fraction="{{{{ params.max_dead }}}}",\n',
    ).replace('params={{"out_dir": {out_dir!r}}}', 'params={{"out_dir": {out_dir!r}, "max_dead": 0.2}}')
    dag_file = tmp_path / "report_only.py"
    dag_file.write_text(
        source.format(
            storage=f"file://{tmp_path}/runs",
            out=str(tmp_path / "summary.json"),
            prices=None,
            out_dir=f"file://{tmp_path}/out",
        )
    )

    def asset_events() -> int:
        with create_session() as session:
            query = (
                select(func.count(AssetEvent.id))
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == "report_only_labels")
            )
            return session.scalar(query) or 0

    events_before = asset_events()
    dag_run = run_dag(dag_file, "report_only")

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["report"] == "failed"
    run = tmp_path / "runs" / "report_only" / dag_run.run_id / "claude_batch"
    failure = json.loads((run / "manifest.json").read_text())["failure"]
    assert failure["bound"] == "max_dead_letter_fraction"
    assert (failure["count"], failure["fraction"], failure["limit"]) == (1, 0.25, 0.2)
    assert "1 of 4 records ended dead_lettered" in (run / "report.html").read_text()
    assert asset_events() == events_before, "a run over its threshold announced its output"


def test_a_run_whose_records_do_not_add_up_fails_after_writing_its_manifest(
    run_dag: Any, tmp_path: Path
) -> None:
    # the build read 5 records, the round holds 4: one record is in no disposition
    source = DAG_SOURCE.replace('{{"records": 4,', '{{"records": 5,')
    dag_file = tmp_path / "report_only.py"
    dag_file.write_text(
        source.format(
            storage=f"file://{tmp_path}/runs",
            out=str(tmp_path / "summary.json"),
            prices=None,
            out_dir=f"file://{tmp_path}/out",
        )
    )

    dag_run = run_dag(dag_file, "report_only")

    assert dag_run.state == "failed"
    assert {ti.task_id: ti.state for ti in dag_run.get_task_instances()}["report"] == "failed"
    manifest = json.loads(
        (tmp_path / "runs" / "report_only" / dag_run.run_id / "claude_batch" / "manifest.json").read_text()
    )
    assert manifest["reconciled"] is False
    failure = manifest["failure"]
    assert (failure["bound"], failure["accounted"], failure["input_records"]) == ("accounting", 4, 5)
    assert not (tmp_path / "summary.json").exists()  # no summary: the task failed
