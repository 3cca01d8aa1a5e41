"""Sending a finished run's pending records again, as a user does: the command, then a run of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.resend_pending import main
from tests.test_pipeline import RUN_DAG_SOURCE, manifest_of, write_run_dag


@pytest.mark.airflow
def test_pending_records_are_written_from_the_input_and_a_new_run_sends_only_them(
    tmp_path: Path, run_dag: Any, emulator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dag_file, storage = write_run_dag(tmp_path, "pending_first", 40, requeue_rounds=0)
    emulator.faults({"expire_next": {"fraction": 0.25, "batches": 1}})
    first = run_dag(dag_file, "pending_first")
    pending = {
        json.loads(line)["custom_id"]
        for line in (storage / "pending_first" / first.run_id / "claude_batch" / "pending.jsonl")
        .read_text()
        .splitlines()
    }
    assert pending, "the expired requests are left pending: requeue_rounds=0"

    out = tmp_path / "pending-input.jsonl"
    code = main(
        [
            "--storage", f"file://{storage}", "--dag-id", "pending_first", "--run-id", first.run_id,
            "--source", f"file://{tmp_path}/records.jsonl", "--out", f"file://{out}",
        ]
    )  # fmt: skip

    assert code == 0
    assert f"{len(pending)} pending record(s) written to file://{out}" in capsys.readouterr().out
    assert {orjson.loads(line)["id"] for line in out.read_bytes().splitlines()} == pending

    second_dag = tmp_path / "pending_again.py"
    second_dag.write_text(
        RUN_DAG_SOURCE.format(
            dag_id="pending_again", source=f"file://{out}", storage=f"file://{storage}",
            output=f"file://{tmp_path}/again.jsonl", extra=repr({}),
        )
    )  # fmt: skip
    created_before = emulator.stats()["batches_created"]
    second = run_dag(second_dag, "pending_again")

    assert second.state == "success"
    assert emulator.stats()["batches_created"] == created_before + 1
    manifest = manifest_of(storage, "pending_again", second)
    assert manifest["input_records"] == len(pending)
    assert manifest["dispositions"]["succeeded"] == len(pending), "only the pending records, each paid once"
