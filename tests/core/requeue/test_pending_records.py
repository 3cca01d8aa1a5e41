"""A finished run's pending records, taken from its input to be sent again."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.requests.sources import FileRecords
from airflow_claude_batch.core.requeue.pending_records import write_pending_records
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import InputError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def test_only_records_never_answered_and_never_possibly_billed_are_picked(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path / "runs", "nightly", "run-1", "classify")
    write_jsonl(
        folder.pending,
        [
            {"custom_id": "t-2", "round": 2, "last_outcome": "expired", "reason": "out_of_rounds"},
            {"custom_id": "t-4", "round": 0, "last_outcome": "errored", "reason": "canceled"},
            {"custom_id": "t-5", "round": 1, "last_outcome": "errored", "reason": "sync_outcome_unknown"},
            {"custom_id": "t-9", "round": 0, "last_outcome": "expired", "reason": "budget"},
        ],
    )
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t-{n}", "text": f"ticket {n}"} for n in range(8)])
    out = tmp_path / "pending-input.jsonl"

    pick = write_pending_records(folder, FileRecords([source]), "id", out)

    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert rows == [{"id": "t-2", "text": "ticket 2"}, {"id": "t-4", "text": "ticket 4"}]
    assert (pick.written, pick.kept_back, pick.missing) == (2, 1, ["t-9"])


def test_a_run_without_a_report_has_nothing_to_pick_yet(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path / "runs", "nightly", "run-1", "classify")
    source = FileRecords([write_jsonl(tmp_path / "in.jsonl", [{"id": "t-1", "text": "x"}])])
    with pytest.raises(InputError, match="the run's report has not run yet"):
        write_pending_records(folder, source, "id", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
