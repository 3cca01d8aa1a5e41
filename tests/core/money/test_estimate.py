from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.money.budget import check_budget
from airflow_claude_batch.core.money.cost_history import RunCost
from airflow_claude_batch.core.money.estimate import CostEstimate, EstimateOptions, estimate_cost
from airflow_claude_batch.core.money.input_tokens import (
    LOCAL_METHOD,
    TokenRate,
)
from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.pricing import PRICES_ENV_VAR, PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.requests.cache_prefix import DEFAULT_HIT_RATE
from airflow_claude_batch.core.requests.marker import MARKER_PREFIX, marker_line
from airflow_claude_batch.core.requests.rendering import EncodedRequest, RequestRenderer, RequestTemplate
from airflow_claude_batch.core.requests.sharding import ShardLimits, ShardWriter, WrittenShard
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import BudgetExceededError, InputError

MILLION = 1_000_000


@pytest.fixture
def prices(monkeypatch: pytest.MonkeyPatch) -> PriceTable:
    monkeypatch.delenv(PRICES_ENV_VAR, raising=False)
    return PriceTable.load()


def rendered(template: RequestTemplate, count: int, text: str = "a" * 400) -> list[EncodedRequest]:
    renderer = RequestRenderer(template)
    # Ids of one length, so that every request has the same size.
    return [renderer.render({"id": f"r-{n:05d}", "text": text}, f"in.jsonl:{n + 1}") for n in range(count)]


def marker_usd(model: str) -> float:
    """One marker request's bound at batch prices: its line's bytes as input tokens, one output token."""
    line = marker_line(MARKER_PREFIX + "0" * (64 - len(MARKER_PREFIX)), model)
    return MoneyMeter(PriceTable.load()).price(model, {"input_tokens": len(line), "output_tokens": 1})[1]


def base_cost(prices: PriceTable, model: str, totals: TokenTotals) -> float:
    """Batch dollars of ``totals`` at the model's base prices (no tier, no multiplier), by the meter."""
    meter = MoneyMeter(prices)
    return meter.cost(meter.rate_of(model, None), totals)


def shards_of(requests: list[EncodedRequest], max_requests: int = 99_999) -> list[WrittenShard]:
    folder = RunFolder.for_run(Path("/unused"), "dag", "run", "claude_batch")
    with ShardWriter(folder, 0, ShardLimits(max_requests=max_requests), dry_run=True) as writer:
        for each in requests:
            writer.add(each)
    return writer.shards


# --- cost ------------------------------------------------------------------------------------------


def test_cost_without_cache_at_batch_and_standard_prices(prices: PriceTable) -> None:
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=500)
    requests = rendered(template, 100)
    rate = TokenRate(
        tokens_per_byte=1000 / requests[0].size, cached_prefix_tokens=0, method="m", sample_size=0
    )
    estimate = estimate_cost(
        shards_of(requests), rate, template, prices, EstimateOptions(expected_output_tokens=200)
    )
    assert estimate.input_tokens == 100_000
    assert (estimate.output_tokens_upper, estimate.output_tokens_expected) == (50_000, 20_000)
    # Sonnet batch: $1.50 / $7.50 per million tokens; one shard, so one marker request in both figures.
    assert estimate.markers_usd == pytest.approx(marker_usd("claude-sonnet-4-6"))
    assert estimate.upper_batch_usd - estimate.markers_usd == pytest.approx(0.1 * 1.5 + 0.05 * 7.5)
    assert estimate.expected_batch_usd - estimate.markers_usd == pytest.approx(0.1 * 1.5 + 0.02 * 7.5)
    assert estimate.upper_standard_usd == pytest.approx(2 * estimate.upper_batch_usd)
    assert estimate.expected_standard_usd == pytest.approx(2 * estimate.expected_batch_usd)


def test_expected_output_is_capped_by_max_tokens_and_defaults_to_half_of_it(prices: PriceTable) -> None:
    template = RequestTemplate(model="claude-haiku-4-5", max_tokens=100)
    shards = shards_of(rendered(template, 10))
    rate = TokenRate(0.25, 0, "m", 0)
    capped = estimate_cost(shards, rate, template, prices, EstimateOptions(expected_output_tokens=5000))
    assert capped.output_tokens_expected == 1000
    assert capped.basis == {"kind": "user", "expected_output_tokens": 5000}
    unset = estimate_cost(shards, rate, template, prices, EstimateOptions())
    assert (unset.output_tokens_expected, unset.output_tokens_upper) == (500, 1000)
    assert unset.basis["kind"] == "default"
    assert any("50% of max_tokens" in note for note in unset.assumptions)


@pytest.mark.parametrize(("ttl", "write_rate"), [("5m", 1.25), ("1h", 2.0)])
def test_a_cached_system_prompt_is_written_or_read_at_the_default_hit_rate(
    prices: PriceTable, ttl: str, write_rate: float
) -> None:
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=1, system="S", cache_system=ttl)
    requests = rendered(template, 10)
    per_request = 1500 / requests[0].size
    rate = TokenRate(tokens_per_byte=per_request, cached_prefix_tokens=1200, method="m", sample_size=0)
    estimate = estimate_cost(shards_of(requests, max_requests=5), rate, template, prices, EstimateOptions())
    # Sonnet batch input $1.50/M. Each request: 1500 input tokens, 1200 of them the cached prefix.
    plain = 10 * 300 * 1.5 / MILLION
    output = 10 * 0.5 * 7.5 / MILLION  # half of max_tokens=1
    hits = DEFAULT_HIT_RATE
    cached = 10 * 1200 * ((1 - hits) * write_rate + hits * 0.1) * 1.5 / MILLION
    upper = plain + 10 * 1 * 7.5 / MILLION + 10 * 1200 * write_rate * 1.5 / MILLION  # no cache hit at all
    markers = 2 * marker_usd("claude-sonnet-4-6")  # two shards
    assert estimate.markers_usd == pytest.approx(markers)
    assert estimate.expected_batch_usd - markers == pytest.approx(plain + output + cached, rel=1e-3)
    assert estimate.upper_batch_usd - markers == pytest.approx(upper, rel=1e-3)
    assert estimate.cached_prefix_tokens == 12_000
    assert estimate.cache_ttl == ttl
    assert estimate.inputs["cache_hit_rate"] == hits
    assert estimate.warnings == ()  # 64 % pays off for both lifetimes


def learned_runs(hit_rate: float, output_per_answer: int = 20, runs: int = 2) -> list[RunCost]:
    """Earlier runs of 100 requests, all answered, with 1,500-token prompts (1,200 cached)."""
    reads = round(100 * 1200 * hit_rate)
    tokens = TokenTotals(
        input=100 * 300, output=100 * output_per_answer, cache_write_1h=100 * 1200 - reads, cache_read=reads
    )
    return [
        RunCost(f"run-{n}", f"2026-11-0{n}", 100, 100, 0, tokens, 100 * 1500, None, None, 0.0)
        for n in range(1, runs + 1)
    ]


@pytest.mark.parametrize(("hit_rate", "warned"), [(0.4, True), (0.6, False)])
def test_a_ttl_that_cannot_pay_off_at_the_expected_hit_rate_is_warned(
    prices: PriceTable, hit_rate: float, warned: bool
) -> None:
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=64, system="S", cache_system="1h")
    requests = rendered(template, 10)
    rate = TokenRate(1500 / requests[0].size, 1200, "m", 0)
    estimate = estimate_cost(
        shards_of(requests), rate, template, prices, EstimateOptions(), history=learned_runs(hit_rate)
    )
    assert estimate.inputs["cache_hit_rate"] == pytest.approx(hit_rate, abs=1e-3)
    # A 1-hour write costs 2x and a read 0.1x: it pays off above (2 - 1) / (2 - 0.1) = 53 % hits.
    assert any("pay off above a 53% hit rate" in w for w in estimate.warnings) is warned
    if warned:
        assert any("cache_system='5m'" in w for w in estimate.warnings)  # 40 % pays off for 5 minutes


def test_the_expected_figure_learns_from_earlier_runs(prices: PriceTable) -> None:
    # Earlier runs used 20 output tokens an answer and hit the cache 80 % of the time; the input was as
    # estimated. A run of the same workload is expected to cost what those inputs cost exactly.
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=64, system="S", cache_system="1h")
    requests = rendered(template, 100)
    rate = TokenRate(1500 / requests[0].size, 1200, "m", 0)
    estimate = estimate_cost(
        shards_of(requests),
        rate,
        template,
        prices,
        EstimateOptions(expected_output_tokens=60),
        history=learned_runs(0.8),
    )
    bill = base_cost(
        prices,
        "claude-sonnet-4-6",
        TokenTotals(input=100 * 300, output=100 * 20, cache_write_1h=24_000, cache_read=96_000),
    )
    assert estimate.basis["kind"] == "history"
    assert estimate.basis["runs"] == 2
    assert estimate.inputs["output_tokens_per_request"] == 20
    assert estimate.expected_batch_usd == pytest.approx(bill, rel=0.01)
    # The upper bound does not learn: no hit, max_tokens.
    assert estimate.upper_batch_usd == pytest.approx(
        base_cost(
            prices, "claude-sonnet-4-6", TokenTotals(input=100 * 300, output=100 * 64, cache_write_1h=120_000)
        ),
        rel=0.01,
    )


def test_a_prefix_under_the_models_minimum_is_plain_input(prices: PriceTable) -> None:
    # Haiku 4.5 caches from 4,096 tokens: a 1,200-token prefix is not cached, in either figure.
    template = RequestTemplate(model="claude-haiku-4-5", max_tokens=1, system="S", cache_system="1h")
    requests = rendered(template, 10)
    rate = TokenRate(1500 / requests[0].size, 1200, "m", 0)
    estimate = estimate_cost(shards_of(requests), rate, template, prices, EstimateOptions())
    assert estimate.cached_prefix_tokens == 0
    assert estimate.cache_ttl is None
    assert estimate.upper_batch_usd - estimate.markers_usd == pytest.approx(
        (10 * 1500 * 0.5 + 10 * 2.5) / MILLION, rel=1e-3
    )
    assert any("under the model's minimum of 4,096" in w for w in estimate.warnings)


def test_cache_control_set_by_render_counts_wherever_it_is(prices: PriceTable) -> None:
    document = "d" * 20_000  # 5,000 tokens at 4 characters a token: cacheable on every model

    def with_tools(record: dict) -> dict:
        return {
            "model": "claude-sonnet-4-6",
            "tools": [
                # 1 hour here too: the API refuses a 1-hour breakpoint after a 5-minute one
                {
                    "name": "t",
                    "input_schema": {"type": "object"},
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": document,
                            "cache_control": {"type": "ephemeral", "ttl": "1h"},
                        },
                        {"type": "text", "text": record["text"]},
                    ],
                }
            ],
        }

    template = RequestTemplate(render=with_tools, max_tokens=10)
    requests = rendered(template, 20)
    assert all(r.cache_prefix.ttl == "1h" and r.cache_prefix.size > 20_000 for r in requests)
    estimate = estimate_cost(
        shards_of(requests), TokenRate(0.25, 0, "m", 0), template, prices, EstimateOptions()
    )
    assert estimate.cache_ttl == "1h"
    assert estimate.cached_prefix_tokens > 20 * 5_000
    no_cache = estimate_cost(
        shards_of(
            rendered(RequestTemplate(render=lambda r: _without_cache(with_tools(r)), max_tokens=10), 20)
        ),
        TokenRate(0.25, 0, "m", 0),
        template,
        prices,
        EstimateOptions(),
    )
    # The upper bound: every request writing its prefix at 2x costs more than not caching at all.
    assert estimate.upper_batch_usd > no_cache.upper_batch_usd
    assert estimate.gap_usd["cache"] > 0


def _without_cache(params: dict) -> dict:
    return orjson.loads(
        orjson.dumps(params)
        .replace(b',"cache_control":{"type":"ephemeral","ttl":"1h"}', b"")
        .replace(b',"cache_control":{"type":"ephemeral"}', b"")
    )


def test_the_upper_bound_holds_at_a_zero_hit_rate(prices: PriceTable) -> None:
    # Whatever the hit rate, the bill of a run (every request answered, max_tokens at most, no hit) is
    # at most the upper bound; and with synchronous retries every answer may be at standard prices.
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=50, system="s" * 8000, cache_system="5m")
    requests = rendered(template, 30)
    rate = TokenRate(0.25, 0, "m", 0)
    estimate = estimate_cost(shards_of(requests), rate, template, prices, EstimateOptions())
    prefix = 8000 // 4 + 1  # the system block's JSON, a little over the text
    worst = sum(
        MoneyMeter(prices).price(
            "claude-sonnet-4-6",
            {
                "input_tokens": r.size // 4 - prefix,
                "cache_creation_input_tokens": prefix,
                "output_tokens": 50,
            },
        )[1]
        for r in requests
    )
    assert worst <= estimate.upper_batch_usd * 1.01
    with_sync = estimate_cost(
        shards_of(requests), rate, template, prices, EstimateOptions(retry_errored_sync=True)
    )
    # Every answer at standard prices; the marker is always in a batch.
    answers = estimate.upper_batch_usd - estimate.markers_usd
    assert with_sync.upper_batch_usd == pytest.approx(2 * answers + estimate.markers_usd)
    assert with_sync.gap_usd["sync_retry"] == pytest.approx(answers)


def test_shard_shares_add_up_to_the_upper_bound(prices: PriceTable) -> None:
    template = RequestTemplate(model="claude-opus-4-6", max_tokens=300)
    requests = rendered(template, 25)
    estimate = estimate_cost(
        shards_of(requests, max_requests=10), TokenRate(0.25, 0, "m", 0), template, prices, EstimateOptions()
    )
    assert len(estimate.shard_upper_batch_usd) == 3
    assert sum(estimate.shard_upper_batch_usd) == pytest.approx(estimate.upper_batch_usd)
    assert estimate.shard_upper_batch_usd[0] == pytest.approx(estimate.shard_upper_batch_usd[1])


def test_several_models_are_priced_each_at_its_own_rate(prices: PriceTable) -> None:
    def choose(record: dict) -> dict:
        model = "claude-opus-4-6" if record["id"].endswith(("0", "2", "4", "6", "8")) else "claude-haiku-4-5"
        return {"model": model, "messages": [{"role": "user", "content": record["text"]}]}

    template = RequestTemplate(render=choose, max_tokens=1000)
    estimate = estimate_cost(
        shards_of(rendered(template, 10)), TokenRate(0, 0, "m", 0), template, prices, EstimateOptions()
    )
    assert set(estimate.by_model) == {"claude-opus-4-6", "claude-haiku-4-5"}
    assert estimate.by_model["claude-opus-4-6"]["cost_usd_upper"] == pytest.approx(5 * 1000 * 12.5 / MILLION)
    assert estimate.by_model["claude-haiku-4-5"]["cost_usd_upper"] == pytest.approx(5 * 1000 * 2.5 / MILLION)


def test_an_unknown_model_in_the_estimate_names_the_prices_file(prices: PriceTable) -> None:
    template = RequestTemplate(
        render=lambda record: {"model": "claude-next-1", "messages": [{"role": "user", "content": "x"}]}
    )
    with pytest.raises(InputError, match=r"no price for model 'claude-next-1'.*prices_file="):
        estimate_cost(
            shards_of(rendered(template, 1)), TokenRate(0.25, 0, "m", 0), template, prices, EstimateOptions()
        )


def test_the_estimate_document_has_the_figures(prices: PriceTable) -> None:
    template = RequestTemplate(model="claude-haiku-4-5", max_tokens=10)
    shards = shards_of(rendered(template, 4))
    estimate = estimate_cost(
        shards, TokenRate(0.25, 0, LOCAL_METHOD, 0), template, prices, EstimateOptions(max_cost_usd=3)
    )
    document = orjson.loads(orjson.dumps(estimate.to_dict()))
    assert document["schema_version"] == 2
    assert (document["records"], document["shards"], document["method"]) == (4, 1, LOCAL_METHOD)
    assert document["body_bytes"] == shards[0].body_bytes
    assert set(document["cost_usd"]) == {"upper_bound", "expected"}
    assert set(document["cost_usd"]["upper_bound"]) == {"batch", "standard"}
    assert document["estimated_cost_usd_upper"] == document["cost_usd"]["upper_bound"]["batch"]
    assert document["estimated_cost_usd_expected"] == document["cost_usd"]["expected"]["batch"]
    assert document["max_cost_usd"] == 3
    assert document["price_sources"] == list(prices.sources)
    assert document["prices"]["as_of"] == prices.as_of
    assert document["prices"]["source"] == prices.source
    assert document["basis"]["kind"] == "default"
    assert document["budget_basis"] == "expected"
    assert set(document["inputs"]) >= {"cache_hit_rate", "input_ratio", "answered_batch_fraction"}


# --- budget ------------------------------------------------------------------------------------------


def budgeted(prices: PriceTable, budget: float | None, basis: str = "expected") -> CostEstimate:
    template = RequestTemplate(model="claude-sonnet-4-6", max_tokens=1000)
    shards = shards_of(rendered(template, 1000))
    options = EstimateOptions(max_cost_usd=budget, budget_basis=basis, expected_output_tokens=100)
    return estimate_cost(shards, TokenRate(0.25, 0, LOCAL_METHOD, 0), template, prices, options)


def test_a_budget_between_expected_and_upper_is_honoured_per_basis(prices: PriceTable) -> None:
    figures = budgeted(prices, None)
    between = (figures.expected_batch_usd + figures.upper_batch_usd) / 2
    assert figures.expected_batch_usd < between < figures.upper_batch_usd
    check_budget(budgeted(prices, between, "expected"))  # passes: the expected figure is under it
    with pytest.raises(BudgetExceededError) as raised:
        check_budget(budgeted(prices, between, "upper"))
    message = str(raised.value)
    assert f"upper cost is ${figures.upper_batch_usd:,.2f}" in message
    assert f"expected ${figures.expected_batch_usd:,.2f} (from expected_output_tokens)" in message
    assert "budget_basis='upper'" in message
    assert "output up to max_tokens instead of the expected output" in message  # what drives the gap
    assert "1,000 requests" in message
    assert "Nothing was submitted" in message
    assert "Raise max_cost_usd" in message


def test_a_run_over_budget_on_the_expected_basis_fails_with_both_figures(prices: PriceTable) -> None:
    estimate = budgeted(prices, 0.5)
    assert estimate.expected_batch_usd > 0.5
    with pytest.raises(BudgetExceededError) as raised:
        check_budget(estimate)
    assert f"expected cost is ${estimate.expected_batch_usd:,.2f}, over max_cost_usd=$0.50" in str(
        raised.value
    )
    assert f"upper bound ${estimate.upper_batch_usd:,.2f}" in str(raised.value)


def test_a_run_within_budget_passes(prices: PriceTable) -> None:
    estimate = budgeted(prices, None)
    check_budget(estimate)
    check_budget(budgeted(prices, math.ceil(estimate.upper_batch_usd), "upper"))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_cost_usd": -1}, "negative"),
        ({"max_cost_usd": float("nan")}, "number of US dollars"),
        ({"max_cost_usd": "ten"}, "number of US dollars"),
        ({"expected_output_tokens": -5}, "expected_output_tokens"),
        ({"sample_size": 0}, "sample_size"),
        ({"budget_basis": "median"}, "budget_basis must be 'expected' or 'upper'"),
    ],
)
def test_bad_estimate_options_are_input_errors(options: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        EstimateOptions(**options)
