"""One money computation: a row, its shard, the run's ledger and a synchronous retry price a request the
same way, data residency (``inference_geo``) included, whether the request or the usage names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.money.money_meter import PRICING_PARAMS, MoneyMeter
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, write_json
from tests.core.batch_results import (
    MODEL,
    PRICES,
    errored,
    read_rows,
    succeeded,
    usage,
    write_shard_list,
)

US = {"inference_geo": "us"}


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    write_json(folder.estimate, {"records": 3, "prices": PRICES.to_document()})
    return folder


def write_geo_shard(folder: RunFolder, geos: dict[str, str | None]) -> ShardDescriptor:
    """A shard whose requests set ``inference_geo`` as ``geos`` says (``None``: not set)."""
    lines = []
    for custom_id, geo in geos.items():
        params: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if geo is not None:
            params["inference_geo"] = geo
        lines.append(orjson.dumps({"custom_id": custom_id, "params": params}) + b"\n")
    path = folder.shard_requests(0, 0)
    with atomic_writer(path) as out:
        out.write(b"".join(lines))
    return ShardDescriptor(
        run_uri=str(folder.root),
        round=0,
        index=0,
        uri=str(path),
        request_count=len(lines),
        body_bytes=sum(map(len, lines)),
    )


def plain_batch_cost(input_tokens: int = 100, output_tokens: int = 10) -> float:
    return 0.5 * (input_tokens * 3 + output_tokens * 15) / 1e6  # Sonnet 4.6, batch


def test_us_only_inference_is_billed_at_its_multiplier_on_every_figure(folder: RunFolder) -> None:
    # Sonnet 4.6 carries the 1.1x data-residency multiplier (prices.json). The API's usage of the
    # emulator (and of older API versions) does not name the region: the request's params must.
    shard = write_geo_shard(folder, {"us": "us", "global": "global", "unset": None})
    lines = [succeeded("us"), succeeded("global"), succeeded("unset")]
    summary = fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=lambda: iter(lines),
        prices=PRICES,
    )
    rows = {row["custom_id"]: row for row in read_rows(folder.shard_outcome(0, 0, "succeeded"))}
    assert rows["us"]["cost_usd"] == pytest.approx(1.1 * plain_batch_cost())
    assert rows["us"][PRICING_PARAMS] == US
    assert rows["global"]["cost_usd"] == pytest.approx(plain_batch_cost())
    assert rows["unset"]["cost_usd"] == pytest.approx(plain_batch_cost())
    assert PRICING_PARAMS not in rows["unset"]
    # The shard's figure (task log, XCom) is its rows' sum, never priced a second way.
    assert summary.cost_usd == pytest.approx(sum(row["cost_usd"] for row in rows.values()))
    write_shard_list(folder, 0, [shard])
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=1)
    assert manifest.money.batch_usd == pytest.approx(summary.cost_usd, abs=1e-6)
    assert manifest.money.synchronous_equivalent_usd == pytest.approx(2 * summary.cost_usd, abs=1e-6)


def test_a_region_reported_in_the_usage_is_priced_too() -> None:
    meter = MoneyMeter(PRICES)
    reported = {**usage(), "inference_geo": "us"}
    assert meter.price(MODEL, reported)[1] == pytest.approx(1.1 * plain_batch_cost())
    # Asked for in the request and reported: applied once, not twice.
    assert meter.price(MODEL, reported, US)[1] == pytest.approx(1.1 * plain_batch_cost())
    # A model whose prices carry no multiplier is not multiplied.
    assert MoneyMeter(PRICES).price("claude-haiku-4-5", usage(), US)[1] == pytest.approx(
        0.5 * (100 * 1 + 10 * 5) / 1e6
    )


def test_a_synchronous_retry_is_priced_with_its_requests_multiplier(folder: RunFolder) -> None:
    shard = write_geo_shard(folder, {"a": "us", "b": "us"})
    lines = [errored("a"), succeeded("b")]
    fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=lambda: iter(lines),
        prices=PRICES,
    )
    write_shard_list(folder, 0, [shard])

    def send(params: Any) -> dict[str, Any]:
        assert params["inference_geo"] == "us"
        return {"model": MODEL, "content": [{"type": "text", "text": "x"}], "usage": usage(1000, 100)}

    requeue_round(folder, 0, [shard], sync=SyncRetry(send, PRICES))
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    standard = (1000 * 3 + 100 * 15) / 1e6
    assert manifest.money.sync_retry_usd == pytest.approx(1.1 * standard)
    assert manifest.money.batch_usd == pytest.approx(1.1 * plain_batch_cost(), abs=1e-6)


def test_rows_use_the_runs_frozen_prices_as_the_ledger_does(folder: RunFolder) -> None:
    write_geo_shard(folder, {"a": None})
    dearer = PRICES.overlay({"models": {MODEL: {"input": 30.0, "output": 150.0}}}, "later")
    summary = fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=lambda: iter([succeeded("a")]),
        prices=dearer,
    )
    assert summary.cost_usd == pytest.approx(plain_batch_cost())
