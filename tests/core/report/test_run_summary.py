"""A run's row on the "Claude batches" page: the manifest's figures, the report's result, the cache."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.run_summary import (
    SOURCE_MANIFEST,
    SOURCE_REPORT_RESULT,
    RunSummary,
    SummaryCache,
    nightly_totals,
    summary_from_manifest,
    summary_from_report_result,
)
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import DISPOSITIONS
from airflow_claude_batch.core.run.storage import read_json
from tests.core.batch_results import PRICES
from tests.core.report.test_ledger import two_round_run


def test_a_written_manifest_gives_the_same_figures_as_the_report(folder: RunFolder) -> None:
    two_round_run(folder)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)

    row = summary_from_manifest(read_json(folder.manifest))

    assert row.source == SOURCE_MANIFEST
    assert row.records == 7
    assert row.outcomes == manifest.dispositions
    assert sum(row.outcomes.values()) == row.records
    assert row.batches == 3
    assert row.rounds == 2
    assert row.actual_usd == pytest.approx(manifest.money.actual_usd)
    assert row.synchronous_equivalent_usd == pytest.approx(manifest.money.synchronous_equivalent_usd)
    assert row.savings_usd == pytest.approx(manifest.money.savings_usd)
    assert row.estimated_usd == 0.1
    assert row.estimated_upper_usd == 0.5
    assert row.reconciled is True
    assert row.report_uri == f"{folder.root}/report.html"


def test_the_report_result_and_the_manifest_agree(folder: RunFolder) -> None:
    two_round_run(folder)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)

    from_result = summary_from_report_result(manifest.summary())
    from_manifest = summary_from_manifest(read_json(folder.manifest))

    assert from_result.source == SOURCE_REPORT_RESULT
    assert {**from_result.to_dict(), "source": None} == {**from_manifest.to_dict(), "source": None}


def test_a_failed_or_canceled_run_says_why() -> None:
    row = summary_from_manifest(
        {
            "input_records": 10,
            "dispositions": {"succeeded": 2, "dead_lettered": 8},
            "failure": {"reason": "8 of 10 records dead-lettered (over 0.5)"},
            "canceled": "2026-01-02T03:04:05Z",
            "run_uri": "s3://bucket/runs/dag/run/claude_batch",
        }
    )

    assert row.failure == "8 of 10 records dead-lettered (over 0.5)"
    assert row.canceled == "2026-01-02T03:04:05Z"
    assert row.outcomes == {name: {"succeeded": 2, "dead_lettered": 8}.get(name, 0) for name in DISPOSITIONS}
    assert row.report_uri == "s3://bucket/runs/dag/run/claude_batch/report.html"


def test_a_damaged_manifest_gives_what_it_can_never_an_error() -> None:
    row = summary_from_manifest({"input_records": "many", "money": [1], "dispositions": None, "rounds": 3})

    assert row.records is None
    assert row.actual_usd == 0.0
    assert set(row.outcomes.values()) == {0}
    assert row.report_uri is None


def test_estimate_versus_actual_is_a_percentage_of_the_estimate() -> None:
    assert RunSummary(actual_usd=1.2, estimated_usd=1.0).estimate_error_pct == pytest.approx(20.0)
    assert RunSummary(actual_usd=1.2).estimate_error_pct is None
    assert RunSummary(actual_usd=0.9, estimated_usd=1.0).to_dict()["estimate_error_pct"] == -10.0


def test_the_cache_reads_a_manifest_once_per_version() -> None:
    cache = SummaryCache()
    reads: list[str] = []

    def read(text: str) -> RunSummary:
        reads.append(text)
        return RunSummary(records=len(reads))

    first = cache.get(("s3://b/m.json", "t1"), lambda: read("t1"))
    again = cache.get(("s3://b/m.json", "t1"), lambda: read("t1"))
    rerun = cache.get(("s3://b/m.json", "t2"), lambda: read("t2"))

    assert first is again
    assert reads == ["t1", "t2"]
    assert rerun is not None
    assert rerun.records == 2


def test_a_manifest_not_written_yet_is_looked_for_again() -> None:
    cache = SummaryCache()
    assert cache.get("m", lambda: None) is None
    assert cache.get("m", lambda: RunSummary(records=3)) == RunSummary(records=3)
    assert cache.reads == 2


def test_the_cache_drops_the_least_recently_used() -> None:
    cache = SummaryCache(size=2)
    for key in ("a", "b"):
        cache.get(key, lambda: RunSummary())
    cache.get("a", lambda: pytest.fail("kept"))
    cache.get("c", lambda: RunSummary())

    assert len(cache) == 2
    assert cache.get("a", lambda: pytest.fail("kept")) == RunSummary()
    assert cache.get("b", lambda: None) is None  # dropped, read again


def test_cost_and_savings_add_up_per_night_oldest_first() -> None:
    totals = nightly_totals(
        [
            ("2026-01-02", RunSummary(actual_usd=1.0, savings_usd=1.0)),
            ("2026-01-01", RunSummary(actual_usd=0.5, savings_usd=0.25)),
            ("2026-01-02", RunSummary(actual_usd=2.0, savings_usd=2.5)),
        ]
    )

    assert [(t.night, t.runs, t.actual_usd, t.savings_usd) for t in totals] == [
        ("2026-01-01", 1, 0.5, 0.25),
        ("2026-01-02", 2, 3.0, 3.5),
    ]
