"""The ledger: dispositions that add up, money from usage, the run's dead-letter and pending files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.flat_output import iter_succeeded_rows
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import write_json
from airflow_claude_batch.core.submit.state import SubmitState, write_state
from tests.core.batch_results import (
    MODEL,
    PRICES,
    canceled,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    succeeded,
    usage,
    write_shard,
    write_shard_list,
)

USER_CANCEL = "2026-01-01T00:00:00Z"


def submitted(folder: RunFolder, shard: ShardDescriptor, batch_id: str) -> None:
    state = SubmitState(
        shard_uri=shard.uri,
        fingerprint="0" * 64,
        request_count=shard.request_count,
        body_bytes=shard.body_bytes,
        intent_at="2026-01-01T00:00:00.000000Z",
        status="submitted",
        batch_id=batch_id,
    )
    write_state(folder.shard_state(shard.round, shard.index), state)


def two_round_run(folder: RunFolder) -> None:
    """Round 0 of 7 records in 2 shards, its requeue, and round 1 (the last)."""
    write_json(
        folder.estimate,
        {"records": 7, "estimated_cost_usd_upper": 0.5, "estimated_cost_usd_expected": 0.1},
    )
    round_0 = [
        fanned_out_shard(
            folder,
            0,
            [
                succeeded("a", "1", usage(1000, 200, cache_write_1h=2000, cache_read=5000)),
                succeeded("b", "not a number"),
                errored("c", "invalid_request_error", "bad <params>"),
                errored("d", "overloaded_error"),
                expired("e"),
            ],
            validator=OutputValidator.from_options(int),
        ),
        fanned_out_shard(folder, 1, [canceled("f"), succeeded("g", "7")], cancel_initiated_at=USER_CANCEL),
    ]
    write_shard_list(folder, 0, round_0)
    submitted(folder, round_0[0], "msgbatch_r0s0")
    submitted(folder, round_0[1], "msgbatch_r0s1")
    record = requeue_round(folder, 0, round_0)
    assert record.requeued == 2
    round_1 = fanned_out_shard(folder, 0, [succeeded("d", "4"), expired("e")], round_index=1)
    submitted(folder, round_1, "msgbatch_r1s0")


def billed_costs(folder: RunFolder) -> float:
    total = 0.0
    for round_index, shard_index in ((0, 0), (0, 1), (1, 0)):
        for outcome in ("succeeded", "invalid_output"):
            total += sum(
                r["cost_usd"] for r in read_rows(folder.shard_outcome(round_index, shard_index, outcome))
            )
    return total


def test_dispositions_add_up_and_money_comes_from_usage(folder: RunFolder) -> None:
    two_round_run(folder)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)

    assert manifest.input_records == 7
    assert manifest.dispositions == {
        "succeeded": 3,
        "invalid_output": 1,
        "refused": 0,
        "dead_lettered": 1,
        "pending": 2,
        "rejected": 0,
    }
    assert manifest.reconciled is True
    assert manifest.notes == []
    assert manifest.batch_ids == ["msgbatch_r0s0", "msgbatch_r0s1", "msgbatch_r1s0"]
    assert [r.round for r in manifest.rounds] == [0, 1]
    assert (manifest.rounds[0].requeued, manifest.rounds[0].dead_lettered, manifest.rounds[0].pending) == (
        2,
        1,
        1,
    )
    assert (manifest.rounds[1].requeued, manifest.rounds[1].pending, manifest.rounds[1].requeue_ran) == (
        0,
        1,
        False,
    )
    assert manifest.outcomes == {
        "succeeded": 3,
        "invalid_output": 1,
        "errored": 2,
        "expired": 2,
        "canceled": 1,
        "refused": 0,
    }

    # four billed answers: a (cached), b, g, d
    expected_tokens = TokenTotals(1000, 200, 0, 2000, 5000) + TokenTotals(300, 30, 0, 0, 0)
    assert manifest.tokens == expected_tokens.to_dict()
    money = manifest.money
    assert money.batch_usd == pytest.approx(billed_costs(folder), abs=1e-6)
    meter = MoneyMeter(PRICES)
    assert money.batch_usd == pytest.approx(meter.cost(meter.rate_of(MODEL, None), expected_tokens), abs=1e-6)
    assert money.synchronous_equivalent_usd == pytest.approx(2 * money.batch_usd, abs=1e-6)
    assert money.savings_usd == pytest.approx(money.batch_usd, abs=1e-6)
    assert money.savings_pct == pytest.approx(50.0)
    assert (money.estimated_upper_usd, money.estimated_expected_usd) == (0.5, 0.1)

    stored = orjson.loads(Path(str(folder.manifest)).read_bytes())
    assert stored["schema_version"] == 2
    assert stored["dispositions"] == manifest.dispositions


def test_the_run_files_list_every_dead_and_pending_record_once(folder: RunFolder) -> None:
    two_round_run(folder)
    write_ledger(folder, prices=PRICES, max_rounds=2)

    dead = read_rows(folder.dead_letter)
    assert [(r["custom_id"], r["round"], r["error_type"], r["message"]) for r in dead] == [
        ("c", 0, "invalid_request_error", "bad <params>")
    ]
    pending = {r["custom_id"]: r for r in read_rows(folder.pending)}
    assert set(pending) == {"f", "e"}
    assert pending["f"] == {
        "custom_id": "f",
        "round": 0,
        "last_outcome": "canceled",
        "reason": "canceled by user",
    }
    assert pending["e"]["round"] == 1
    assert pending["e"]["last_outcome"] == "expired"
    assert "after the last round" in pending["e"]["reason"]


def test_the_last_rounds_non_retryable_errors_are_dead_lettered_by_the_report(folder: RunFolder) -> None:
    write_json(folder.estimate, {"records": 3})
    shard = fanned_out_shard(folder, 0, [errored("a", "permission_error"), errored("b"), succeeded("c")])
    write_shard_list(folder, 0, [shard])
    manifest, samples = write_ledger(folder, prices=PRICES, max_rounds=1)
    assert manifest.dispositions == {
        "succeeded": 1,
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": 1,
        "pending": 1,
        "rejected": 0,
    }
    assert manifest.reconciled
    assert [r["custom_id"] for r in read_rows(folder.dead_letter)] == ["a"]
    assert [r["custom_id"] for r in samples["pending"]] == ["b"]
    assert manifest.batch_ids == []


def test_a_missing_outcome_row_is_caught(folder: RunFolder) -> None:
    two_round_run(folder)
    expired_file = Path(str(folder.shard_outcome(1, 0, "expired")))
    expired_file.write_bytes(b"")  # a row lost after the fanout
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.reconciled is False
    assert any("round 1: 2 requests but 1 outcome rows" in note for note in manifest.notes)
    assert any("add up to 6, not to the 7 input records" in note for note in manifest.notes)


def test_a_shard_without_results_keeps_its_requests_pending(folder: RunFolder) -> None:
    write_json(folder.estimate, {"records": 3})
    done = fanned_out_shard(folder, 0, [succeeded("a")])
    stuck = write_shard(folder, 0, 1, ["b", "c"])
    write_shard_list(folder, 0, [done, stuck])
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=1)
    assert manifest.dispositions["pending"] == 2
    assert manifest.reconciled
    assert len(manifest.warnings) == 1
    assert "shard 1 has no results" in manifest.warnings[0]
    assert {r["last_outcome"] for r in read_rows(folder.pending)} == {"no_results"}


def test_synchronous_retries_count_as_succeeded_at_standard_prices(folder: RunFolder) -> None:
    write_json(folder.estimate, {"records": 2})
    shard = fanned_out_shard(folder, 0, [errored("a"), succeeded("b")])
    write_shard_list(folder, 0, [shard])

    def send(params: Any) -> dict[str, Any]:
        return {"model": MODEL, "content": [{"type": "text", "text": "x"}], "usage": usage(1000, 100)}

    requeue_round(folder, 0, [shard], sync=SyncRetry(send, PRICES))
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.dispositions == {
        "succeeded": 2,
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": 0,
        "pending": 0,
        "rejected": 0,
    }
    assert manifest.reconciled, manifest.notes
    assert manifest.money.sync_retry_usd == pytest.approx((1000 * 3 + 100 * 15) / 1e6)
    assert manifest.money.actual_usd == pytest.approx(
        manifest.money.batch_usd + manifest.money.sync_retry_usd
    )
    assert [row["custom_id"] for row in iter_succeeded_rows(folder, 2)] == ["b", "a"]


def test_a_synchronous_retry_that_is_refused_is_final_and_counted_as_refused(folder: RunFolder) -> None:
    write_json(folder.estimate, {"records": 2})
    shard = fanned_out_shard(folder, 0, [errored("a"), succeeded("b")])
    write_shard_list(folder, 0, [shard])

    def send(params: Any) -> dict[str, Any]:
        declined = [{"type": "text", "text": "no"}]
        return {"model": MODEL, "content": declined, "stop_reason": "refusal", "usage": usage(1000, 5)}

    record = requeue_round(folder, 0, [shard], sync=SyncRetry(send, PRICES))
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)

    assert record.requeued == 0  # a refusal is never sent again
    assert manifest.dispositions["refused"] == 1
    assert manifest.dispositions["succeeded"] == 1
    assert manifest.reconciled, manifest.notes
    assert manifest.money.sync_retry_usd == pytest.approx((1000 * 3 + 5 * 15) / 1e6)  # billed all the same
    assert [row["custom_id"] for row in iter_succeeded_rows(folder, 2)] == ["b"]


def test_a_dry_run_reports_its_estimate_and_that_nothing_was_submitted(folder: RunFolder) -> None:
    write_json(folder.estimate, {"records": 5, "estimated_cost_usd_upper": 0.3, "dry_run": True})
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.rounds == []
    assert manifest.money.estimated_upper_usd == 0.3
    assert manifest.money.actual_usd == 0
    assert "dry run" in manifest.warnings[0]
    assert manifest.reconciled is False  # nothing accounts for the 5 records: they were never sent
    assert read_rows(folder.pending) == []


def test_the_money_uses_the_prices_frozen_into_the_run_not_those_loaded_later(folder: RunFolder) -> None:
    two_round_run(folder)
    estimate = orjson.loads(Path(str(folder.estimate)).read_bytes())
    write_json(folder.estimate, {**estimate, "prices": PRICES.to_document()})
    dearer = PRICES.overlay(
        {"as_of": "2030-01-01", "models": {MODEL: {"input": 30.0, "output": 150.0}}}, "later"
    )

    manifest, _ = write_ledger(folder, prices=dearer, max_rounds=3)

    assert manifest.money.batch_usd == pytest.approx(billed_costs(folder), abs=1e-6)
    assert manifest.prices["as_of"] == PRICES.as_of
    assert "later" not in manifest.price_sources
    assert manifest.cache_hit_rate == round(5000 / 7000, 4)
    assert manifest.estimate["estimated_cost_usd_upper"] == 0.5
    # Without frozen prices (a run built before they were frozen), the loaded ones are used.
    write_json(folder.estimate, estimate)
    again, _ = write_ledger(folder, prices=dearer, max_rounds=3)
    assert again.money.batch_usd == pytest.approx(10 * manifest.money.batch_usd, abs=1e-6)
