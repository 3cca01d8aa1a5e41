"""Reconciling a results stream with its shard: unknown ids and repeats are left out, a shortfall fails."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import ReconciliationError, ResultsStreamInterrupted
from tests.core.batch_results import expired, succeeded
from tests.core.results.test_fanout import fan_out, rows


def test_unknown_ids_and_duplicates_are_counted_and_left_out(
    folder: RunFolder, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [succeeded("a"), succeeded("stranger"), succeeded("a", "again"), expired("b"), expired("b")]
    with caplog.at_level(logging.WARNING):
        summary, _ = fan_out(folder, ["a", "b"], lines)

    assert summary.unknown_ids == 1
    assert summary.duplicates == 2
    assert summary.descriptor_counts()["unknown_ids"] == 1
    assert summary.descriptor_counts()["duplicates"] == 2
    assert [r["text"] for r in rows(folder, "succeeded")] == ["ok"]
    assert rows(folder, "expired") == [{"custom_id": "b"}]
    assert "stranger" in caplog.text
    assert "2 repeated result lines" in caplog.text


def test_a_shortfall_is_an_error_and_publishes_nothing(folder: RunFolder) -> None:
    with pytest.raises(ReconciliationError, match=r"msgbatch_test.*2 of 3 requests have no result line"):
        fan_out(folder, ["a", "b", "c"], [succeeded("a")])
    shard_dir = folder.shard_outcome(0, 0, "succeeded").parent
    assert not shard_dir.exists() or list(shard_dir.iterdir()) == []


def test_a_duplicate_within_one_reading_is_still_counted_after_a_restart(folder: RunFolder) -> None:
    calls: list[int] = []

    def open_results() -> Iterator[dict[str, Any]]:
        calls.append(1)
        yield succeeded("a")
        yield succeeded("a")
        if len(calls) == 1:
            raise ResultsStreamInterrupted("cut")
        yield succeeded("b")

    summary, _ = fan_out(folder, ["a", "b"], [], open_results=open_results)
    assert summary.duplicates == 1
    assert [r["custom_id"] for r in rows(folder, "succeeded")] == ["a", "b"]
