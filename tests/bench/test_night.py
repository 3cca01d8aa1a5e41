"""``python -m bench night --quick`` runs end to end, so the benchmark cannot rot unnoticed.

The figures themselves belong in docs/benchmarks.md; here only their consistency is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_night import overlap, union

ROOT = Path(__file__).resolve().parents[2]


def test_union_merges_overlapping_intervals_and_overlap_counts_inside_only():
    busy = union([(5.0, 7.0), (0.0, 2.0), (1.0, 3.0), (7.0, 8.0)])
    assert busy == [(0.0, 3.0), (5.0, 8.0)]
    assert overlap(2.0, 6.0, busy) == 2.0
    assert overlap(3.0, 5.0, busy) == 0.0


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
