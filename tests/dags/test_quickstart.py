"""The quickstart DAG, as a new user copies it: short, run as it is, its summary used downstream."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.dags.test_sample_dags_run import read_jsonl, write_jsonl
from tests.fixtures.airflow import SAMPLE_DAGS

REPO = SAMPLE_DAGS.parent
QUICKSTART = SAMPLE_DAGS / "quickstart.py"
LABELS = {"billing", "bug", "account", "feature_request", "shipping", "other"}


def test_the_quickstart_is_short_and_is_the_readmes_first_example() -> None:
    source = QUICKSTART.read_text()
    assert len(source.splitlines()) <= 40
    first_example = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert first_example is not None
    assert first_example.group(1) == source
    assert "airflow_claude_batch.core" not in source, "an example imports no internals"
    assert not re.search(r'f"[^"]*\{\{', source), "an example has no Jinja in f-strings"


@pytest.mark.airflow
def test_the_quickstart_runs_as_it_is_by_hand_and_hands_its_summary_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any, dags_folder: Path, run_dag: Any
) -> None:
    tickets = read_jsonl(SAMPLE_DAGS / "data" / "tickets" / "sample.jsonl")[:20]
    write_jsonl(tmp_path / "tickets.jsonl", tickets)
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_TICKETS", f"file://{tmp_path}/tickets.jsonl")
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{tmp_path}/storage")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.5")

    dag_run = run_dag(dags_folder / "quickstart.py", "quickstart", logical_date=None)  # a manual trigger

    assert dag_run.state == "success"
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["announce"] == "success"
    labels = tmp_path / "storage" / "quickstart" / f"labels-{dag_run.run_after.date().isoformat()}.jsonl"
    rows = [orjson.loads(line) for line in labels.read_bytes().splitlines()]
    assert sorted(row["custom_id"] for row in rows) == sorted(ticket["id"] for ticket in tickets)
    assert {orjson.loads(row["text"])["label"] for row in rows} <= LABELS
