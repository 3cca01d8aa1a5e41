"""``python -m bench night --quick`` runs end to end, so the benchmark cannot rot unnoticed.

The figures themselves belong in docs/benchmarks.md; here only their consistency is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_night import breakdown, overlap, union

ROOT = Path(__file__).resolve().parents[2]


def test_union_merges_overlapping_intervals_and_overlap_counts_inside_only():
    busy = union([(5.0, 7.0), (0.0, 2.0), (1.0, 3.0), (7.0, 8.0)])
    assert busy == [(0.0, 3.0), (5.0, 8.0)]
    assert overlap(2.0, 6.0, busy) == 2.0
    assert overlap(3.0, 5.0, busy) == 0.0


def test_a_deferred_submit_counts_as_waiting_for_the_queue_not_as_submitting():
    def task(task_id, start, end, triggers=()):
        return {"task_id": f"g.round_0.{task_id}", "start": start, "end": end, "triggers": list(triggers)}

    dag = {
        "started": 0.0,
        "dag_started": 1.0,
        "finished": 31.0,
        "tasks": [
            task("build", 1.0, 5.0),
            task("submit", 5.0, 20.0, [(6.0, 18.0)]),  # deferred 12 s while the first batch processed
            task("wait", 20.0, 26.0, [(20.5, 25.5)]),
            task("report", 27.0, 30.0),
        ],
    }
    batches = [{"created_at": "1970-01-01T00:00:05Z", "ended_at": "1970-01-01T00:00:22Z"}]
    split = breakdown(dag, batches)
    phases = split["phases"]
    assert split["api_processing_seconds"] == 17.0
    assert phases["submit"] == {"wall_seconds": 3.0, "outside_api_seconds": 0.0}
    assert phases["submit, deferred (waiting for the queue)"] == {
        "wall_seconds": 12.0,
        "outside_api_seconds": 0.0,
    }
    assert phases["waiting/polling"] == {"wall_seconds": 6.0, "outside_api_seconds": 4.0}
    assert phases["Airflow between tasks (retry delays included)"] == {
        "wall_seconds": 2.0,
        "outside_api_seconds": 2.0,
    }
    assert split["outside_api_seconds"] == 13.0  # build 4, wait 4, report 3, between tasks 2


@pytest.mark.airflow
def test_the_quick_night_runs_the_whole_pipeline_and_accounts_for_its_time(tmp_path):
    command = [sys.executable, "-m", "bench", "night", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "night-2000.json").read_text())

    assert report["dag_state"] == "success", report["last_error"]
    assert report["shards_per_round"]["round_0"] == 4  # 2,000 records, 500 a shard
    calls = report["api_calls"]
    submits = sum(report["shards_per_round"].values())
    assert calls["creates_received"] == calls["batches_created"] == submits
    assert calls["results_downloads"] == submits
    assert calls["rpm_limited"] == calls["queue_limited"] == 0
    assert len(report["batches"]) == submits
    assert 1_900 <= report["output_lines"] <= 2_000  # 1 % errored, requeued once

    names = {row["task_id"].rsplit(".", 1)[-1] for row in report["per_task"]}
    assert {"build", "submit", "wait", "fanout", "requeue", "report"} <= names
    assert all(row["peak_rss_mib"] >= row["start_rss_mib"] > 0 for row in report["per_task"])

    split = report["time"]
    phases = split["phases"]
    assert split["api_processing_seconds"] > 0
    assert split["outside_api_seconds"] == pytest.approx(
        split["dag_wall_seconds"] - split["api_processing_seconds"]
    )
    assert sum(phase["outside_api_seconds"] for phase in phases.values()) == pytest.approx(
        split["outside_api_seconds"], abs=0.05
    )
    assert sum(phase["wall_seconds"] for phase in phases.values()) == pytest.approx(
        split["dag_wall_seconds"], abs=0.05
    )
    markdown = (tmp_path / "night-2000.md").read_text()
    assert "python -m bench night --quick" in markdown
    assert "| claude_batch.build | 1 |" in markdown
