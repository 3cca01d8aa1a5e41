"""Earlier runs of a pipeline, read from their manifests: what the estimate learns from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.money.cost_history import (
    LearnedFigures,
    RunCost,
    pipeline_history,
)
from airflow_claude_batch.core.run.storage import write_json


def manifest(
    built_at: str,
    *,
    records: int = 100,
    answered: int = 100,
    sync: int = 0,
    tokens: dict[str, int] | None = None,
    estimated_input: int = 10_000,
    actual: float = 1.0,
    group_id: str | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "input_records": records,
        "dispositions": {"succeeded": answered, "invalid_output": 0, "dead_lettered": records - answered},
        "rounds": [{"sync_retry": {"succeeded": sync, "invalid_output": 0}}],
        "tokens": tokens or {"input": 5_000, "output": 2_000, "cache_write_1h": 1_000, "cache_read": 9_000},
        "estimate": {"built_at": built_at, "input_tokens": estimated_input},
        "money": {"estimated_expected_usd": 0.9, "estimated_upper_usd": 3.0, "actual_usd": actual},
    }
    if group_id:
        document["pipeline"] = {"dag_id": "dag", "group_id": group_id}
    return document


def test_history_is_the_newest_runs_of_the_dag_that_answered_something(tmp_path: Path) -> None:
    dag = tmp_path / "dag"
    write_json(dag / "run-a" / "manifest.json", manifest("2026-11-01T18:00:00+00:00", actual=1.0))
    write_json(dag / "run-b" / "manifest.json", manifest("2026-11-03T18:00:00+00:00", actual=3.0))
    write_json(dag / "run-c" / "manifest.json", manifest("2026-11-02T18:00:00+00:00", actual=2.0))
    write_json(dag / "dry" / "manifest.json", manifest("2026-11-04T18:00:00+00:00", answered=0))
    (dag / "unfinished").mkdir()
    write_json(tmp_path / "other_dag" / "run-x" / "manifest.json", manifest("2026-11-05T18:00:00+00:00"))

    runs = pipeline_history(tmp_path, "dag", "classify", exclude_run="run-c", limit=5)

    assert [run.run_id for run in runs] == ["run-b", "run-a"]
    assert [run.actual_usd for run in runs] == [3.0, 1.0]
    assert pipeline_history(tmp_path, "dag", limit=1)[0].run_id == "run-b"
    assert pipeline_history(tmp_path, "no_such_dag") == []


def test_with_folders_per_pipeline_only_the_same_group_counts(tmp_path: Path) -> None:
    dag = tmp_path / "dag"
    write_json(
        dag / "r1" / "classify" / "manifest.json", manifest("2026-11-01T00:00:00", group_id="classify")
    )
    write_json(dag / "r1" / "summarise" / "manifest.json", manifest("2026-11-01T00:00:00", actual=9.0))
    # The flat layout, from a run of another pipeline of the same DAG: its manifest names its group.
    write_json(dag / "r0" / "manifest.json", manifest("2026-10-01T00:00:00", group_id="summarise"))

    runs = pipeline_history(tmp_path, "dag", "classify")

    assert [(run.run_id, run.actual_usd) for run in runs] == [("r1", 1.0)]


def test_what_is_learned_is_pooled_over_the_runs() -> None:
    first = RunCost.from_manifest("a", manifest("1", records=100, answered=90, sync=10))
    second = RunCost.from_manifest(
        "b",
        manifest(
            "2",
            records=300,
            answered=300,
            tokens={"input": 15_000, "output": 3_000, "cache_write_5m": 3_000, "cache_read": 27_000},
            estimated_input=40_000,
        ),
    )
    assert first is not None
    assert second is not None
    learned = LearnedFigures.from_runs([first, second])
    assert learned is not None
    assert learned.runs == ("a", "b")
    assert learned.output_per_answer == pytest.approx(5_000 / 390)
    assert learned.hit_rate == pytest.approx(36_000 / 40_000)
    # billed input per answer against the estimate per request: (15,000 + 45,000) over
    # (10,000 * 90/100 + 40,000 * 300/300)
    assert learned.input_ratio == pytest.approx(60_000 / 49_000)
    assert learned.answered_batch_fraction == pytest.approx(380 / 400)
    assert learned.answered_sync_fraction == pytest.approx(10 / 400)
    assert LearnedFigures.from_runs([]) is None


def test_answers_reused_from_the_store_are_not_learned_from() -> None:
    # 100 records, 90 reused at $0 (their tokens are another run's): 10 answered here, 2,000 tokens out.
    document = {**manifest("1", records=100, answered=100), "reused": {"requests": 90, "saved_usd": 0.9}}
    run = RunCost.from_manifest("a", document)
    assert run is not None
    assert (run.records, run.answered_batch) == (10, 10)
    learned = LearnedFigures.from_runs([run])
    assert learned is not None
    assert learned.output_per_answer == 200
