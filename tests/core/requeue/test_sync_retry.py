"""The synchronous retry: errored requests sent once more at full price; an unknown outcome may be billed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.report_page import write_report
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.sync_retry import SyncRequestError, SyncRetry
from airflow_claude_batch.core.run.layout import RunFolder
from tests.core.batch_results import (
    MODEL,
    PRICES,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    succeeded,
    usage,
    write_shard_list,
)
from tests.core.run.test_cancel_record import never_sent, pending, timed_out


class FakeMessages:
    """Answers synchronous retries: ``a*`` succeed, ``busy*`` stay overloaded, ``bad*`` are invalid."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        prompt = params["messages"][0]["content"]
        self.calls.append(prompt)
        if prompt.startswith("busy"):
            raise SyncRequestError("overloaded_error", "still busy", "req_s")
        if prompt.startswith("bad"):
            raise SyncRequestError("invalid_request_error", "nope", "req_s")
        return {
            "model": MODEL,
            "content": [{"type": "text", "text": f"sync {prompt}"}],
            "stop_reason": "end_turn",
            "usage": usage(100, 10),
        }


def test_errored_requests_can_be_retried_synchronously_once_at_standard_prices(folder: RunFolder) -> None:
    # write_shard uses "hello" as every prompt; give each request its own prompt to steer the fake
    lines = [errored("a1"), errored("busy1"), errored("bad1"), expired("e1"), errored("x", "not_found_error")]
    shard = fanned_out_shard(folder, 0, lines)
    path = Path(str(folder.shard_requests(0, 0)))
    rewritten = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for request in rewritten:
        request["params"]["messages"][0]["content"] = request["custom_id"]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rewritten))

    send = FakeMessages()
    record = requeue_round(folder, 0, [shard], sync=SyncRetry(send, PRICES))

    assert sorted(send.calls) == ["a1", "bad1", "busy1"]  # not the expired, not the non-retryable
    rows = {row["custom_id"]: row for row in read_rows(folder.shard_sync_retry(0, 0))}
    assert rows["a1"]["outcome"] == "succeeded"
    assert rows["a1"]["price"] == "standard"
    assert rows["a1"]["text"] == "sync a1"
    assert rows["a1"]["cost_usd"] == pytest.approx((100 * 3 + 10 * 15) / 1e6)  # full price
    assert rows["busy1"]["outcome"] == "errored"
    assert rows["busy1"]["retryable"] is True
    requeued = [
        orjson.loads(line)["custom_id"]
        for line in Path(str(folder.shard_requests(1, 0))).read_bytes().splitlines()
    ]
    assert sorted(requeued) == ["busy1", "e1"]
    dead = {row["custom_id"]: row["reason"] for row in read_rows(folder.round_dead_letter(0))}
    assert set(dead) == {"x", "bad1"}
    assert dead["bad1"].startswith("on the synchronous retry")
    assert (record.sync_succeeded, record.requeued, record.dead_lettered) == (1, 2, 2)
    assert record.retry_errored_sync is True

    # a requeue that died after paying for those calls does not pay again
    (folder.round_dir(0) / "requeue.json").unlink()
    again = FakeMessages()
    assert requeue_round(folder, 0, [shard], sync=SyncRetry(again, PRICES)).sync_succeeded == 1
    assert again.calls == []


def test_an_unknown_synchronous_outcome_is_pending_and_counted_at_its_upper_cost(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [succeeded("a"), errored("b"), errored("c")])
    write_shard_list(folder, 0, [shard])
    sync = SyncRetry(timed_out, PRICES, concurrency=1)

    record = requeue_round(folder, 0, [shard], sync=sync)

    # the first call timed out (unknown); the endpoint is then not used again: c definitely was not sent
    assert (record.sync_unknown, record.sync_fell_back, record.requeued) == (1, 1, 1)
    rows = read_rows(folder.shard_sync_retry(0, 0))
    assert [row["outcome"] for row in rows] == ["unknown", "fell_back"]
    unknown = rows[0]
    assert unknown["custom_id"] == "b"
    assert unknown["cost_usd_upper"] > 0
    assert "cost_usd" not in unknown
    params = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
    assert unknown["cost_usd_upper"] == round(sync.upper_cost(params), 6)
    assert (
        sync.upper_cost(params)
        >= MoneyMeter(PRICES, batch=False).price(MODEL, {"input_tokens": 1024, "output_tokens": 64})[1]
    )
    fanned_out_shard(folder, 0, [succeeded("c")], round_index=1)

    manifest, samples = write_ledger(folder, prices=PRICES, max_rounds=2)
    write_report(folder.report, manifest, samples, [])

    assert "possibly billed" in folder.report.read_text()
    assert pending(folder)["b"]["reason"] == "sync_outcome_unknown"
    assert manifest.dispositions == {
        "succeeded": 2,
        "invalid_output": 0,
        "dead_lettered": 0,
        "pending": 1,
        "refused": 0,
        "rejected": 0,
    }
    assert manifest.reconciled, manifest.notes
    money = manifest.money
    assert money.sync_retry_unknown_usd == unknown["cost_usd_upper"]
    assert money.actual_upper_usd == pytest.approx(money.actual_usd + money.sync_retry_unknown_usd)
    assert manifest.rounds[0].sync_retry_unknown_usd == unknown["cost_usd_upper"]
    # a rerun of the requeue never sends it again
    (folder.round_dir(0) / "requeue.json").unlink()
    assert requeue_round(folder, 0, [shard], sync=SyncRetry(never_sent, PRICES)).sync_unknown == 1
