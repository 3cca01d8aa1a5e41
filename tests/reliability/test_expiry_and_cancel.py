"""Invariant 1 when batches expire or are cancelled in the middle of a run: counts reconcile to the input,
expired requests go to the next round, and a user's cancel is respected (held, never resubmitted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from tests.fixtures.emulator import DEFAULT_CONN_ENV
from tests.reliability.harness import RunHarness, lost_and_doubled, read_jsonl, records, rows_by_round

RECORDS = 12


def check_accounted(run: RunHarness, summary: dict[str, Any], figures: Any) -> None:
    lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
    figures.lines(len(lost), len(doubled), RECORDS)
    assert not lost
    assert not doubled
    assert summary["reconciled"] is True
    assert sum(summary["dispositions"].values()) == summary["input_records"] == RECORDS


def test_requests_expired_in_the_middle_of_a_run_are_requeued_and_succeed(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    faulty_emulator.faults({"expire_next": {"fraction": 0.5, "batches": 2}})
    run = make_run(RECORDS, max_rounds=2)

    summary = run.run()

    rounds = rows_by_round(run.run_dir)
    expired = {custom_id for custom_id, (outcome, _) in rounds[0].items() if outcome == "expired"}
    figures.add("faults_injected", len(expired))
    assert expired
    assert set(rounds[1]) == expired  # exactly the expired requests were sent again
    assert {outcome for outcome, _ in rounds[1].values()} == {"succeeded"}
    assert summary["dispositions"]["succeeded"] == RECORDS
    assert faulty_emulator.stats()["batches_created"] == 2 + 1  # two shards, one requeue shard
    check_accounted(run, summary, figures)


def test_a_real_24_hour_window_running_out_leaves_nothing_dropped(
    make_run: Callable[..., RunHarness],
    make_emulator: Callable[..., Any],
    figures: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A short window and a slow emulator: what is not processed in time really expires, round after round."""
    slow = make_emulator(window_seconds=0.5, speed=8.0)
    monkeypatch.setenv(DEFAULT_CONN_ENV, slow.connection_json)
    run = make_run(RECORDS, max_rounds=2, build_kwargs={"max_requests_per_shard": RECORDS})

    summary = run.run()

    rounds = rows_by_round(run.run_dir)
    expired_first = {custom_id for custom_id, (outcome, _) in rounds[0].items() if outcome == "expired"}
    expired_last = {custom_id for custom_id, (outcome, _) in rounds[1].items() if outcome == "expired"}
    pending = {row["custom_id"] for row in read_jsonl(run.run_dir / "pending.jsonl")}
    figures.add("faults_injected", len(expired_first) + len(expired_last))
    assert expired_first
    assert set(rounds[1]) == expired_first
    assert pending == expired_last  # still unfinished after the last round: listed, not dropped
    assert summary["dispositions"]["pending"] == len(expired_last)
    assert slow.stats()["batches_created"] == 2
    assert slow.stats()["cancels"] == 0
    check_accounted(run, summary, figures)


def test_a_users_cancel_in_the_middle_of_a_run_is_respected(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    run = make_run(RECORDS, max_rounds=2)
    first, second = run.build()
    faulty_emulator.faults({"processing_seconds": 60.0})  # the first batch runs long enough to be cancelled
    shards = [run.submit(first)]
    faulty_emulator.faults({"processing_seconds": None})
    shards.append(run.submit(second))
    cancelled = shards[0]["batch_id"]
    ClaudeBatchHook().cancel_batch(cancelled)  # the user, from the console

    ended = [run.wait(shard) for shard in shards]
    fanned_out = [run.fanout(shard) for shard in ended]
    next_round = run.requeue(fanned_out, 0)
    summary = run.report()

    figures.add("faults_injected")
    stats = faulty_emulator.stats()
    canceled = {
        custom_id
        for custom_id, (outcome, _) in rows_by_round(run.run_dir)[0].items()
        if outcome == "canceled"
    }
    pending = read_jsonl(run.run_dir / "pending.jsonl")
    # the API's counts include the batch's marker request, which is no record: it was canceled too
    assert ended[0]["request_counts"]["canceled"] == len(canceled) + 1 > 1
    assert next_round == []  # nothing of the cancelled batch was sent again
    assert stats["batches_created"] == 2
    assert stats["cancels"] == 1  # the user's, and no other
    assert {row["custom_id"] for row in pending} == canceled
    assert all(row["last_outcome"] == "canceled" for row in pending)
    assert summary["dispositions"]["pending"] == len(canceled)
    check_accounted(run, summary, figures)
