"""OpenLineage facets of the build and report tasks, with the OpenLineage provider and without it.

CI runs this module in both environments: the default one (Airflow 3.3, no OpenLineage provider) and
the Airflow 3.1 one, whose constraints include ``apache-airflow-providers-openlineage``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import write_json
from airflow_claude_batch.lineage import dataset_name
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from tests.core.batch_results import errored, fanned_out_shard, succeeded, write_shard_list

HAS_OPENLINEAGE = importlib.util.find_spec("airflow.providers.openlineage") is not None


def context(run_id: str = "manual__1") -> dict[str, Any]:
    return {
        "ti": SimpleNamespace(dag_id="lineage_dag", task_id="t", xcom_push=lambda **_: None),
        "run_id": run_id,
    }


def names(datasets: list[Any]) -> set[tuple[str, str]]:
    return {(dataset.namespace, dataset.name) for dataset in datasets}


def test_datasets_are_named_as_openlineage_names_files() -> None:
    assert dataset_name("s3://bucket/runs/a/manifest.json") == ("s3://bucket", "runs/a/manifest.json")
    assert dataset_name("file:///tmp/x.jsonl") == ("file", "/tmp/x.jsonl")
    assert dataset_name("/tmp/x.jsonl") == ("file", "/tmp/x.jsonl")


def test_the_build_reports_its_source_files_and_shards(tmp_path: Path) -> None:
    source = tmp_path / "tickets.jsonl"
    source.write_text("".join(json.dumps({"id": f"t{i}", "text": f"ticket {i}"}) + "\n" for i in range(3)))
    build = ClaudeBatchBuildOperator(
        task_id="build",
        source=f"file://{source}",
        storage=f"file://{tmp_path}/runs",
        conn_id=None,
        model="claude-haiku-4-5",
        max_tokens=16,
    )

    shards = build.execute(context())
    lineage = build.get_openlineage_facets_on_complete(None)

    if not HAS_OPENLINEAGE:
        assert lineage is None
        return
    assert names(lineage.inputs) == {("file", str(source))}
    assert names(lineage.outputs) == {dataset_name(shard["uri"]) for shard in shards}
    assert len(lineage.outputs) == len(shards) >= 1


def test_the_report_reports_the_run_folder_and_its_files(tmp_path: Path) -> None:
    storage = f"file://{tmp_path}/runs"
    folder = RunFolder.for_run(ObjectStoragePath(storage), "lineage_dag", "manual__1", "claude_batch")
    write_json(folder.estimate, {"records": 2, "estimated_cost_usd_upper": 0.01})
    lines = [succeeded("a", '{"label": "bug"}'), errored("b", "invalid_request_error", "bad")]
    write_shard_list(folder, 0, [fanned_out_shard(folder, 0, lines)])
    report = ClaudeBatchReportOperator(
        task_id="report", storage=storage, max_rounds=1, output_uri=f"file://{tmp_path}/out/labels.jsonl"
    )

    summary = report.execute(context())
    lineage = report.get_openlineage_facets_on_complete(None)

    if not HAS_OPENLINEAGE:
        assert lineage is None
        return
    assert names(lineage.inputs) == {dataset_name(str(folder.root))}
    outputs = names(lineage.outputs)
    assert ("file", f"{tmp_path}/out/labels.jsonl") in outputs
    assert dataset_name(summary["files"]["manifest"]) in outputs
