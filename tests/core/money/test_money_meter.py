"""One money computation: a row, its shard, the run's ledger and a synchronous retry price a request the
same way, data residency (``inference_geo``) included, whether the request or the usage names it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

import airflow_claude_batch
from airflow_claude_batch.core.money.expected_rates import Expectation
from airflow_claude_batch.core.money.group_pricing import GroupPricer
from airflow_claude_batch.core.money.input_tokens import TokenRate
from airflow_claude_batch.core.money.money_meter import PRICING_PARAMS, MoneyMeter
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sharding import GroupTally
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


# --- one price wherever a request is counted ----------------------------------------------------------

#: Sonnet 4.6 with a long-context tier and cache multiples of its own, on top of the shipped prices (which
#: give it the 1.1x ``inference_geo="us"`` multiplier): every rule of the meter on one model.
TIERED = PRICES.overlay(
    {
        "models": {
            MODEL: {
                "input": 3.0,
                "output": 15.0,
                "prompt_tiers": [{"above_input_tokens": 200_000, "input": 6.0, "output": 22.5}],
                "cache_multipliers": {"write_5m": 1.5, "write_1h": 2.5, "read": 0.05},
            }
        }
    },
    "test",
)


class Case(NamedTuple):
    """One request: its usage, its region, and the cache lifetime and hit rate the estimate sees."""

    uncached: int
    output: int
    cached: int = 0
    ttl: str | None = None  # "5m" / "1h": the cached tokens are written; with ``hit``, read
    hit: bool = False
    geo: str | None = None
    stop_reason: str = "end_turn"

    def usage(self) -> dict[str, Any]:
        value: dict[str, Any] = {"input_tokens": self.uncached, "output_tokens": self.output}
        if self.hit:
            value["cache_read_input_tokens"] = self.cached
        elif self.cached:
            value["cache_creation_input_tokens"] = self.cached
            value["cache_creation"] = {
                "ephemeral_5m_input_tokens": self.cached if self.ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": self.cached if self.ttl == "1h" else 0,
            }
        return value

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": self.output,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if self.geo is not None:
            params["inference_geo"] = self.geo
        return params

    def message(self) -> dict[str, Any]:
        return {
            "model": MODEL,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": self.stop_reason,
            "usage": self.usage(),
        }

    def by_hand(self, *, batch: bool) -> float:
        """The price worked out from the pricing page's rules, apart from the meter."""
        long = self.uncached + self.cached > 200_000
        input_price, output_price = (6.0, 22.5) if long else (3.0, 15.0)
        multiple = {None: 1.0, "5m": 1.5, "1h": 2.5}[self.ttl] if not self.hit else 0.05
        dollars = (input_price * (self.uncached + self.cached * multiple) + output_price * self.output) / 1e6
        return dollars * (1.1 if self.geo == "us" else 1.0) * (0.5 if batch else 1.0)


CASES = {
    "plain": Case(1000, 200),
    "write_5m_us": Case(300, 100, cached=6000, ttl="5m", geo="us"),
    "write_1h": Case(300, 100, cached=6000, ttl="1h", geo="global"),
    "read_us": Case(300, 100, cached=6000, ttl="5m", hit=True, geo="us"),
    "long_us": Case(250_000, 500, geo="us"),
    "long_by_its_cache_read": Case(150_000, 500, cached=60_000, ttl="5m", hit=True),
    # billed, though no answer: an errored row with a price
    "context_window_us": Case(1000, 50, geo="us", stop_reason="model_context_window_exceeded"),
}


def estimate_per_request(case: Case, *, batch: bool) -> float:
    """The estimate's expected figure for a group of this one request, told its exact tokens."""
    expectation = Expectation({"kind": "user"}, 1.0 if case.hit else 0.0, float(case.output), 1.0, 1.0, 0.0)
    rate = TokenRate(1.0, case.cached, "counted", 1)  # a byte a token; the prefix counted exactly
    pricer = GroupPricer(rate, RequestTemplate(model=MODEL, max_tokens=case.output), TIERED, expectation)
    total = case.uncached + case.cached
    group = GroupTally(1, total, case.output, 1 if case.cached else 0, 0, total)
    sums = pricer.price((MODEL, case.ttl, case.geo), group)
    return sums.expected_batch if batch else sums.expected_standard


def test_a_row_its_shard_the_run_a_synchronous_retry_and_the_estimate_price_a_request_alike(
    tmp_path: Path,
) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    write_json(folder.estimate, {"records": len(CASES), "prices": TIERED.to_document()})
    path = folder.shard_requests(0, 0)
    with atomic_writer(path) as out:
        for custom_id, case in CASES.items():
            out.write(orjson.dumps({"custom_id": custom_id, "params": case.params()}) + b"\n")
    lines = [
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": case.message()}}
        for custom_id, case in CASES.items()
    ]
    shard = fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=path,
        open_results=lambda: iter(lines),
        prices=TIERED,
    )
    rows = {
        row["custom_id"]: row
        for outcome in ("succeeded", "errored")
        for row in read_rows(folder.shard_outcome(0, 0, outcome))
    }
    descriptor = ShardDescriptor(str(folder.root), 0, 0, str(path), len(CASES), path.stat().st_size)
    write_shard_list(folder, 0, [descriptor])
    manifest, _ = write_ledger(folder, prices=TIERED, max_rounds=1)

    sync = SyncRetry(lambda params: CASES[params["metadata"]["user_id"]].message(), TIERED)
    for custom_id, case in CASES.items():
        batch, standard = case.by_hand(batch=True), case.by_hand(batch=False)
        assert rows[custom_id]["cost_usd"] == pytest.approx(batch, abs=1e-9), custom_id
        assert estimate_per_request(case, batch=True) == pytest.approx(batch, abs=1e-9), custom_id
        assert estimate_per_request(case, batch=False) == pytest.approx(standard, abs=1e-9), custom_id
        params = {**case.params(), "metadata": {"user_id": custom_id}}
        assert sync.retry(custom_id, params)["cost_usd"] == pytest.approx(standard, abs=1e-9), custom_id
    batch_total = sum(case.by_hand(batch=True) for case in CASES.values())
    standard_total = sum(case.by_hand(batch=False) for case in CASES.values())
    assert shard.cost_usd == pytest.approx(batch_total, abs=1e-9)
    assert manifest.money.batch_usd == pytest.approx(batch_total, abs=1e-6)
    assert manifest.money.synchronous_equivalent_usd == pytest.approx(standard_total, abs=1e-6)


# --- nowhere else -------------------------------------------------------------------------------------

PACKAGE = Path(airflow_claude_batch.__file__).parent
#: The attributes a dollar figure is made of: a model's rates and tiers, the batch multiplier, the cache
#: multiples, the request multipliers.
PRICE_DATA = frozenset(
    {
        "rates",
        "tier",
        "prompt_tiers",
        "above_input_tokens",
        "batch_multiplier",
        "cache_multipliers",
        "write_5m",
        "write_1h",
        "multipliers",
        "factor",
    }
)
#: Who may read them: the meter (the arithmetic), the table and a model's prices (the data), and the
#: estimate's cache warning (the break-even hit rate, a ratio of the cache multiples, no dollars).
READERS = {
    "core/money/money_meter.py": PRICE_DATA,
    "core/money/pricing.py": PRICE_DATA,
    "core/api/model_prices.py": PRICE_DATA,
    "core/money/group_pricing.py": frozenset({"cache_multipliers", "write_5m", "write_1h"}),
}


def package_modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_only_the_meter_turns_prices_into_dollars() -> None:
    found = [
        f"{module}:{node.lineno} reads .{node.attr}"
        for module, tree in package_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in PRICE_DATA
        and node.attr not in READERS.get(module, frozenset())
    ]
    assert not found, (
        "dollars are computed by the money meter alone (core/money/money_meter.py: MoneyMeter.price, "
        f"MoneyMeter.cost); price it there instead of reading the prices: {found}"
    )


def test_only_the_meter_divides_by_the_million_tokens_prices_are_quoted_for() -> None:
    found = []
    for module, tree in package_modules():
        for node in ast.walk(tree):
            million = (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, (ast.Mult, ast.Div, ast.FloorDiv))
                and any(
                    isinstance(side, ast.Constant) and side.value == 1_000_000
                    for side in (node.left, node.right)
                )
            ) or (isinstance(node, ast.Name) and "MILLION" in node.id.upper())
            if million and module != "core/money/money_meter.py":
                found.append(f"{module}:{node.lineno}")
    assert not found, f"per-million prices are turned into dollars by the money meter alone: {found}"
