"""The estimate's upper bound bounds the bill: whole runs on the emulator (whose ``count_tokens`` and
answers agree), with records of widely varied lengths and with CJK text, counted with a 20-request
sample and without any count."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.emulator import EmulatorHandle
from tests.reliability.harness import RunHarness, read_jsonl, write_jsonl

WORDS = tuple(
    "the invoice shows a double charge after the renewal of my annual plan please refund".split()  # noqa: SIM905
)
CJK = "請求書に二重の請求が表示されています年間プランの更新後に返金をお願いします我的订单没有到达"


def varied_records(count: int, seed: int, cjk_share: float = 0.0) -> list[dict[str, Any]]:
    """Records from a few characters to thousands of words, log-uniformly (most short, a few long, so
    a 20-request sample is easily unlike the run), ``cjk_share`` of them Chinese and Japanese."""
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        if rng.random() < cjk_share:
            text = "".join(rng.choice(CJK) for _ in range(int(10 ** rng.uniform(0.5, 3.5))))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(int(10 ** rng.uniform(0.3, 3.6))))
        rows.append({"id": f"r-{number:05d}", "text": text})
    return rows


def run_and_compare(tmp_path: Path, rows: list[dict[str, Any]], **build: Any) -> tuple[float, dict[str, Any]]:
    source = write_jsonl(tmp_path / "in" / "records.jsonl", rows)
    run = RunHarness(
        storage=tmp_path / "storage",
        source=f"file://{source}",
        build_kwargs={"model": "claude-sonnet-4-6", "max_tokens": 8, **build},
    )
    summary = run.run()
    manifest = orjson.loads((run.run_dir / "manifest.json").read_bytes())
    estimate = orjson.loads((run.run_dir / "estimate.json").read_bytes())
    # max_tokens 8 cuts the answers (invalid output, billed all the same): every record answered once.
    billed = manifest["dispositions"]["succeeded"] + manifest["dispositions"]["invalid_output"]
    assert billed == len(rows), summary
    return manifest["money"]["actual_usd"], estimate


def test_the_upper_bound_holds_on_10000_records_of_varied_lengths_in_10_shards(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # The case: scaled from a 20-request count_tokens sample by the sample's mean tokens per
    # byte, and without the 10 markers, the upper bound was $1.876 for a bill of $1.928.
    # With these records the sample's mean tokens per byte is 6.9 % under the run's.
    actual, estimate = run_and_compare(tmp_path, varied_records(10_000, seed=2), max_requests_per_shard=1_000)
    assert actual <= estimate["estimated_cost_usd_upper"], (actual, estimate["method"])
    assert (estimate["shards"], estimate["sample_size"]) == (10, 20)
    assert estimate["markers_usd"] > 0


def test_the_upper_bound_holds_on_a_run_of_cjk_and_english_text(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # 30 % Chinese and Japanese records: the sample's mean tokens per byte is 13 % under the run's.
    rows = varied_records(2_000, seed=0, cjk_share=0.3)
    actual, estimate = run_and_compare(tmp_path, rows, max_requests_per_shard=500)
    assert actual <= estimate["estimated_cost_usd_upper"], (actual, estimate["method"])


def test_without_count_tokens_the_upper_bound_is_one_token_per_byte(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = varied_records(500, seed=0, cjk_share=0.5)
    # The build without a connection counts nothing: the local figure, bytes / characters per token.
    actual, estimate = run_and_compare(tmp_path, rows, max_requests_per_shard=250, conn_id=None)
    assert estimate["sample_size"] == 0
    assert "upper bound: one token per byte" in estimate["method"]
    assert actual <= estimate["estimated_cost_usd_upper"]


def render_us_only(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 8,
        "inference_geo": "us",
        "messages": [{"role": "user", "content": record["text"]}],
    }


def test_us_only_inference_is_billed_at_its_multiplier_through_a_whole_run(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # The emulator's usage does not name the region (as API versions before usage.inference_geo):
    # the request's params must carry the 1.1x of Sonnet 4.6 into every figure.
    rows = varied_records(40, seed=3)
    source = write_jsonl(tmp_path / "in" / "records.jsonl", rows)
    run = RunHarness(
        storage=tmp_path / "storage",
        source=f"file://{source}",
        build_kwargs={"model": None, "render": render_us_only, "max_requests_per_shard": 20},
    )
    run.run()
    manifest = orjson.loads((run.run_dir / "manifest.json").read_bytes())
    rows_cost = markers_cost = 0.0
    for shard, outcome in itertools.product((0, 1), ("succeeded", "invalid_output")):
        for row in read_jsonl(Path(run.folder.shard_outcome(0, shard, outcome).path)):
            usage = row["usage"]
            plain = 0.5 * (usage["input_tokens"] * 3 + usage["output_tokens"] * 15) / 1e6
            assert row["pricing_params"] == {"inference_geo": "us"}
            assert row["cost_usd"] == pytest.approx(1.1 * plain)
            rows_cost += row["cost_usd"]
    for shard in (0, 1):
        markers_cost += orjson.loads(Path(run.folder.shard_marker(0, shard).path).read_bytes())["cost_usd"]
    assert manifest["dispositions"]["succeeded"] + manifest["dispositions"]["invalid_output"] == 40
    assert manifest["money"]["batch_usd"] == pytest.approx(rows_cost + markers_cost, abs=1e-6)
