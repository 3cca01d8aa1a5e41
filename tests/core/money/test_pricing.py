from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.pricing import PRICES_ENV_VAR, PriceTable, canonical_model_name
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.exceptions import InputError

MILLION = 1_000_000


def cost_usd(table: PriceTable, model: str, usage: Mapping[str, Any], *, batch: bool = True) -> float:
    """One usage's US dollars, priced by the money meter (the one place tokens become dollars)."""
    return MoneyMeter(table, batch=batch).price(model, usage)[1]


def cost_of_totals(table: PriceTable, model: str, totals: TokenTotals, *, batch: bool = True) -> float:
    """US dollars of ``totals`` at the model's base prices (no tier, no multiplier), by the money meter."""
    meter = MoneyMeter(table, batch=batch)
    return meter.cost(meter.rate_of(model, None), totals)


@pytest.fixture
def prices(monkeypatch: pytest.MonkeyPatch) -> PriceTable:
    monkeypatch.delenv(PRICES_ENV_VAR, raising=False)
    return PriceTable.load()


@pytest.mark.parametrize(
    ("model", "batch_input", "batch_output"),
    [
        ("claude-opus-4-5", 2.50, 12.50),
        ("claude-opus-4-6", 2.50, 12.50),
        ("claude-opus-4-7", 2.50, 12.50),
        ("claude-opus-5", 2.50, 12.50),
        ("claude-opus-4-8", 2.50, 12.50),
        ("claude-sonnet-4", 1.50, 7.50),
        ("claude-sonnet-4-5", 1.50, 7.50),
        ("claude-sonnet-4-6", 1.50, 7.50),
        ("claude-haiku-4-5", 0.50, 2.50),
    ],
)
def test_batch_prices_per_million_tokens_are_half_the_standard_ones(
    prices: PriceTable, model: str, batch_input: float, batch_output: float
) -> None:
    # Per request of 100,000 tokens, below every prompt-length tier; ten of them make a million.
    tenth = MILLION // 10
    assert 10 * cost_usd(prices, model, {"input_tokens": tenth}) == pytest.approx(batch_input)
    assert 10 * cost_usd(prices, model, {"output_tokens": tenth}) == pytest.approx(batch_output)
    assert 10 * cost_usd(prices, model, {"input_tokens": tenth}, batch=False) == pytest.approx(
        2 * batch_input
    )
    assert 10 * cost_usd(prices, model, {"output_tokens": tenth}, batch=False) == pytest.approx(
        2 * batch_output
    )


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("claude-sonnet-4.6", "claude-sonnet-4-6"),
        ("Claude-Sonnet-4.6", "claude-sonnet-4-6"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-5-latest", "claude-opus-4-5"),
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-6-v1:0", "claude-sonnet-4-6"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ],
)
def test_model_names_are_matched_whatever_their_spelling(
    prices: PriceTable, spelling: str, canonical: str
) -> None:
    assert canonical_model_name(spelling) == canonical
    assert canonical_model_name(spelling) in prices.models
    assert prices.price(spelling) == prices.price(canonical)


def test_a_family_is_not_taken_for_another_by_prefix(prices: PriceTable) -> None:
    assert prices.price("claude-sonnet-4").input == 3.0
    assert canonical_model_name("claude-sonnet-4-9") not in prices.models
    assert canonical_model_name("claude-opus-4") not in prices.models


def test_an_unknown_model_names_the_model_and_the_prices_file_to_extend(prices: PriceTable) -> None:
    with pytest.raises(InputError) as raised:
        cost_usd(prices, "claude-mystery-9", {"input_tokens": 1})
    message = str(raised.value)
    assert "'claude-mystery-9'" in message
    assert "prices.json" in message
    assert PRICES_ENV_VAR in message
    assert "prices_file=" in message


def test_cache_writes_and_reads_are_priced_at_their_own_rates(prices: PriceTable) -> None:
    usage = {
        "input_tokens": MILLION,
        "output_tokens": MILLION,
        "cache_creation_input_tokens": 3 * MILLION,
        "cache_read_input_tokens": 10 * MILLION,
        "cache_creation": {"ephemeral_5m_input_tokens": MILLION, "ephemeral_1h_input_tokens": 2 * MILLION},
    }
    # Sonnet standard: input 3, output 15; 5m write 1.25x, 1h write 2x, read 0.1x; batch = half.
    standard = 3 + 15 + 3 * 1.25 + 2 * 3 * 2.0 + 10 * 3 * 0.1
    assert cost_usd(prices, "claude-sonnet-4-6", usage, batch=False) == pytest.approx(standard)
    assert cost_usd(prices, "claude-sonnet-4-6", usage) == pytest.approx(standard / 2)


def test_cache_creation_without_the_split_is_priced_at_the_5_minute_rate(prices: PriceTable) -> None:
    usage = {"input_tokens": 0, "cache_creation_input_tokens": MILLION}
    assert cost_usd(prices, "claude-haiku-4-5", usage, batch=False) == pytest.approx(1.0 * 1.25)
    totals = TokenTotals.from_usage(usage)
    assert (totals.cache_write_5m, totals.cache_write_1h) == (MILLION, 0)


def test_the_1h_rate_is_twice_the_input_price(prices: PriceTable) -> None:
    usage = {"cache_creation_input_tokens": MILLION, "cache_creation": {"ephemeral_1h_input_tokens": MILLION}}
    assert cost_usd(prices, "claude-opus-4-6", usage, batch=False) == pytest.approx(5.0 * 2)
    assert cost_usd(prices, "claude-opus-4-6", usage) == pytest.approx(5.0)


def test_absent_and_null_usage_fields_count_as_zero(prices: PriceTable) -> None:
    usage = {
        "input_tokens": 1000,
        "output_tokens": None,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation": None,
    }
    assert TokenTotals.from_usage(usage) == TokenTotals(input=1000)
    assert TokenTotals.from_usage(None) == TokenTotals()
    assert cost_usd(prices, "claude-haiku-4-5", usage) == pytest.approx(1000 * 0.5 / MILLION)


def test_cost_of_totals_equals_cost_of_the_usage(prices: PriceTable) -> None:
    usage = {
        "input_tokens": 1234,
        "output_tokens": 567,
        "cache_creation_input_tokens": 890,
        "cache_read_input_tokens": 4321,
        "cache_creation": {"ephemeral_5m_input_tokens": 90, "ephemeral_1h_input_tokens": 800},
    }
    totals = TokenTotals.from_usage(usage)
    for batch in (True, False):
        assert cost_of_totals(prices, "claude-sonnet-4-5", totals, batch=batch) == pytest.approx(
            cost_usd(prices, "claude-sonnet-4-5", usage, batch=batch)
        )


def test_a_users_prices_file_overlays_the_shipped_prices(tmp_path: Path, prices: PriceTable) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "models": {
                    "claude-sonnet-4.6": {"input": 4.0, "output": 20.0},
                    "my-gateway-model": {"input": 1, "output": 1},
                },
                "cache_multipliers": {"read": 0.2},
            }
        )
    )
    table = PriceTable.load(override)
    assert cost_usd(table, "claude-sonnet-4-6", {"input_tokens": MILLION}) == pytest.approx(2.0)
    assert cost_usd(table, "my-gateway-model", {"output_tokens": MILLION}, batch=False) == pytest.approx(1.0)
    assert cost_usd(table, "claude-haiku-4-5", {"input_tokens": MILLION}) == cost_usd(
        prices, "claude-haiku-4-5", {"input_tokens": MILLION}
    )
    assert cost_usd(
        table, "claude-haiku-4-5", {"cache_read_input_tokens": MILLION}, batch=False
    ) == pytest.approx(0.2)
    assert table.sources[-1] == str(override)


def test_the_environment_variable_names_the_prices_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    override = tmp_path / "team-prices.json"
    override.write_text(json.dumps({"models": {"claude-new-5": {"input": 8, "output": 40}}}))
    monkeypatch.setenv(PRICES_ENV_VAR, str(override))
    table = PriceTable.load()
    assert cost_usd(table, "claude-new-5", {"input_tokens": MILLION}) == pytest.approx(4.0)
    assert str(override) in table.sources


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"models": {"x": {"input": 1}}}', "not valid"),
        ('{"models": {"x": {"input": -1, "output": 1}}}', "not valid"),
        ('{"batch_multiplier": "half"}', "not valid"),
    ],
)
def test_a_broken_prices_file_is_an_input_error(tmp_path: Path, content: str, problem: str) -> None:
    override = tmp_path / "prices.json"
    override.write_text(content)
    with pytest.raises(InputError, match=problem) as raised:
        PriceTable.load(override)
    assert str(override) in str(raised.value)


def test_a_missing_prices_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the prices file"):
        PriceTable.load(tmp_path / "absent.json")


# --- provenance, tiers, multipliers, freezing ------------------------------------------------------


def test_the_shipped_prices_say_when_and_where_they_were_read_and_what_they_leave_out(
    prices: PriceTable,
) -> None:
    assert len(prices.as_of or "") == 10
    assert (prices.source or "").startswith("https://platform.claude.com/")
    assert any("web search" in item for item in prices.not_modelled)


def test_a_long_prompt_on_a_tiered_model_is_priced_at_its_tier(prices: PriceTable) -> None:
    short = {"input_tokens": 200_000, "output_tokens": 1_000}
    long = {"input_tokens": 150_000, "cache_read_input_tokens": 50_001, "output_tokens": 1_000}
    assert cost_usd(prices, "claude-sonnet-4-5", short, batch=False) == pytest.approx(0.6 + 0.015)
    # Above 200,000 input tokens (cache reads included): $6 / $22.50, the cache read at 0.1 of $6.
    expected = (150_000 * 6.0 + 50_001 * 0.6 + 1_000 * 22.5) / MILLION
    assert cost_usd(prices, "claude-sonnet-4-5", long, batch=False) == pytest.approx(expected)
    # Sonnet 4.6 has no long-context tier.
    assert cost_usd(prices, "claude-sonnet-4-6", long, batch=False) == pytest.approx(
        (150_000 * 3.0 + 50_001 * 0.3 + 1_000 * 15.0) / MILLION
    )


def test_us_only_inference_costs_more_on_the_models_it_applies_to(prices: PriceTable) -> None:
    usage = {"input_tokens": 1_000, "output_tokens": 100}
    for model, factor in (("claude-sonnet-4-6", 1.1), ("claude-opus-4-8", 1.1), ("claude-haiku-4-5", 1.0)):
        plain = cost_usd(prices, model, usage)
        assert cost_usd(prices, model, {**usage, "inference_geo": "us"}) == pytest.approx(factor * plain)
        assert cost_usd(prices, model, {**usage, "inference_geo": "global"}) == pytest.approx(plain)


def test_an_override_can_replace_any_part_and_the_table_freezes_whole(
    prices: PriceTable, tmp_path: Path
) -> None:
    override = tmp_path / "mine.json"
    override.write_text(
        json.dumps(
            {
                "as_of": "2027-01-01",
                "source": "our contract",
                "models": {
                    "claude-haiku-4-5": {"input": 0.8, "output": 4.0, "cache_multipliers": {"read": 0.05}}
                },
                "multipliers": {"inference_geo": {"us": {"factor": 1.2, "models": ["claude-haiku-4-5"]}}},
            }
        )
    )
    table = PriceTable.load(str(override))
    assert (table.as_of, table.source) == ("2027-01-01", "our contract")
    assert table.cache_multipliers("claude-haiku-4-5").read == 0.05
    assert table.cache_multipliers("claude-sonnet-4-6").read == 0.1
    assert table.factor("claude-haiku-4-5", {"inference_geo": "us"}) == 1.2
    frozen = PriceTable.from_document(json.loads(json.dumps(table.to_document())), "frozen")
    usage = {"input_tokens": 300_000, "cache_read_input_tokens": 7_000, "output_tokens": 500}
    for model in ("claude-haiku-4-5", "claude-sonnet-4", "claude-opus-4-8"):
        for extra in ({}, {"inference_geo": "us"}):
            assert cost_usd(frozen, model, {**usage, **extra}) == cost_usd(table, model, {**usage, **extra})
