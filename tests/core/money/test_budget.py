"""The budget after the build: requeue rounds and synchronous retries that would pass it are not sent,
and their requests are listed as pending with the reason."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.round_budget import round_budget
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.sync_retry import SyncRequestError, SyncRetry
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.storage import write_json
from tests.core.batch_results import (
    MODEL,
    PRICES,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    request,
    succeeded,
    usage,
    write_shard_list,
)

#: One answer of 100 input and 10 output tokens at batch prices.
ANSWER_USD = MoneyMeter(PRICES).price(MODEL, usage(100, 10))[1]
#: The same at standard prices: a synchronous retry.
SYNC_USD = MoneyMeter(PRICES, batch=False).price(MODEL, usage(100, 10))[1]


def a_round_with_three_to_requeue(folder: RunFolder, budget: float, basis: str = "expected") -> list:
    shard = fanned_out_shard(folder, 0, [succeeded("a"), expired("b"), expired("c"), errored("d")])
    write_shard_list(folder, 0, [shard])
    # 4 records; per request $0.10 expected, $0.50 upper at batch prices (twice that at standard).
    write_json(
        folder.estimate,
        {
            "records": 4,
            "max_cost_usd": budget,
            "budget_basis": basis,
            "cost_usd": {
                "expected": {"batch": 0.4, "standard": 0.8},
                "upper_bound": {"batch": 2.0, "standard": 4.0},
            },
        },
    )
    return [shard]


def test_the_budget_left_is_the_budget_less_what_the_rounds_so_far_cost(folder: RunFolder) -> None:
    a_round_with_three_to_requeue(folder, 1.0, "upper")
    budget = round_budget(folder, 0, PRICES)
    assert budget is not None
    assert budget.spent_usd == pytest.approx(ANSWER_USD, abs=1e-6)
    assert (budget.per_request_usd, budget.per_sync_request_usd) == (0.5, 1.0)
    write_json(folder.estimate, {"records": 4, "max_cost_usd": None})
    assert round_budget(folder, 0, PRICES) is None


def test_a_round_that_fits_is_requeued(folder: RunFolder) -> None:
    shards = a_round_with_three_to_requeue(folder, 0.31 + ANSWER_USD)
    record = requeue_round(folder, 0, shards, budget=round_budget(folder, 0, PRICES))
    assert (record.requeued, record.budget_held) == (3, 0)


@pytest.mark.parametrize("basis", ["expected", "upper"])
def test_a_round_that_would_pass_the_budget_is_not_submitted_and_listed_pending(
    folder: RunFolder, basis: str
) -> None:
    # $0.29 left: three requests at $0.10 (expected) or $0.50 (upper) do not fit.
    shards = a_round_with_three_to_requeue(folder, 0.29 + ANSWER_USD, basis)
    record = requeue_round(folder, 0, shards, budget=round_budget(folder, 0, PRICES))

    assert (record.requeued, record.budget_held, record.next_shards) == (0, 3, [])
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.reconciled, manifest.notes
    assert manifest.dispositions == {
        "succeeded": 1,
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": 0,
        "pending": 3,
        "rejected": 0,
    }
    pending = read_rows(folder.pending)
    assert sorted(row["custom_id"] for row in pending) == ["b", "c", "d"]
    reason = pending[0]["reason"]
    assert reason.startswith("budget: round 1")
    assert f"({basis} estimate)" in reason
    assert "max_cost_usd=$" in reason
    assert "not submitted" in reason


class Answers:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, params: dict) -> dict:
        self.calls += 1
        if self.calls > 100:
            raise SyncRequestError("overloaded_error", "busy")
        return {"model": MODEL, "content": [{"type": "text", "text": "ok"}], "usage": usage(100, 10)}


def test_synchronous_retries_stop_when_the_next_would_pass_the_budget(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [errored("e1"), errored("e2"), errored("e3"), errored("e4")])
    write_shard_list(folder, 0, [shard])
    write_json(
        folder.estimate,
        {
            "records": 4,
            "max_cost_usd": 0.0001 * 4 + SYNC_USD * 2.5,
            "budget_basis": "expected",
            "cost_usd": {"expected": {"batch": 0.0004, "standard": SYNC_USD * 4}},
        },
    )
    send = Answers()
    # The round is reserved first (4 x $0.0001), then each synchronous retry costs SYNC_USD: two fit, and
    # what they actually cost is taken off what is left.
    record = requeue_round(
        folder, 0, [shard], sync=SyncRetry(send, PRICES), budget=round_budget(folder, 0, PRICES)
    )

    assert send.calls == 2
    assert (record.sync_succeeded, record.budget_held, record.requeued) == (2, 2, 0)
    held = read_rows(folder.round_dir(0) / "budget-held.jsonl")
    assert [row["reason"].split(" would")[0] for row in held] == ["budget: a synchronous retry"] * 2
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.reconciled, manifest.notes
    assert manifest.dispositions["pending"] == 2


def test_a_synchronous_retry_of_unknown_outcome_counts_as_spent_at_its_upper_cost(folder: RunFolder) -> None:
    # Round 0: "d" errors and its synchronous retry meets a gateway's 504 (possibly billed), "e" expires
    # and goes to round 1. The budget leaves room for round 1's request only if the unknown retry is
    # taken as free: it must not be, so round 1's request is kept back as pending.
    def gateway_504(params: dict) -> dict:
        raise SyncRequestError("api_error", "504 Gateway Timeout", outcome_unknown=True)

    sync = SyncRetry(gateway_504, PRICES)
    upper = round(sync.upper_cost(request("d")["params"]), 6)
    shard = fanned_out_shard(folder, 0, [succeeded("a"), errored("d"), expired("e")])
    write_shard_list(folder, 0, [shard])
    write_json(
        folder.estimate,
        {
            "records": 3,
            "max_cost_usd": ANSWER_USD + upper + 0.00005,
            "budget_basis": "expected",
            "cost_usd": {"expected": {"batch": 0.0003, "standard": 0.0006}},
        },
    )
    record = requeue_round(folder, 0, [shard], sync=sync, budget=round_budget(folder, 0, PRICES))
    assert (record.sync_unknown, record.requeued) == (1, 1)

    spent = round_budget(folder, 0, PRICES)
    assert spent is not None
    assert spent.spent_usd == pytest.approx(ANSWER_USD + upper, abs=1e-6)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert spent.spent_usd == manifest.money.actual_upper_usd > manifest.money.actual_usd

    next_shards = read_shard_list(folder, 1)
    assert next_shards is not None
    fanned_out_shard(folder, 0, [expired("e")], round_index=1)
    later = requeue_round(folder, 1, next_shards, budget=round_budget(folder, 1, PRICES))
    assert (later.requeued, later.budget_held) == (0, 1)
    held = read_rows(folder.round_dir(1) / "budget-held.jsonl")
    assert held[0]["custom_id"] == "e"
    assert held[0]["reason"].startswith("budget: round 2")
