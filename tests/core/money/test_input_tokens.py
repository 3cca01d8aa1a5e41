"""Input tokens: the run's sample, and its input measured by count_tokens or locally by bytes."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.money.input_tokens import (
    LOCAL_METHOD,
    ReservoirSample,
    count_tokens_params,
    measure_tokens,
)
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from tests.core.money.test_estimate import rendered


def test_the_sample_keeps_its_size_and_is_spread_over_the_whole_run() -> None:
    means = []
    for seed in range(200):
        sample = ReservoirSample(20, seed=seed)
        for position in range(10_000):
            sample.offer(position)  # type: ignore[arg-type]
        assert len(sample.items) == 20
        assert len(set(sample.items)) == 20
        means.append(sum(sample.items) / 20)
    # A uniform sample of 20 from 0..9999 has mean 4999.5 and standard error 645; 200 runs average out.
    assert abs(sum(means) / len(means) - 4999.5) < 250
    assert min(min_ for min_ in means) < 4000 < 6000 < max(means)


def test_a_short_run_is_sampled_whole() -> None:
    sample = ReservoirSample(20)
    for position in range(7):
        sample.offer(position)  # type: ignore[arg-type]
    assert sample.items == list(range(7))


def test_the_sample_is_the_same_on_a_rerun() -> None:
    def draw() -> list[int]:
        sample = ReservoirSample(5, seed=0)
        for position in range(1000):
            sample.offer(position)  # type: ignore[arg-type]
        return sample.items

    assert draw() == draw()


@pytest.mark.parametrize(("model", "ratio"), [("claude-haiku-4-5", 4), ("claude-opus-4-8", 3)])
def test_the_local_estimate_is_bytes_over_the_models_characters_per_token(model: str, ratio: int) -> None:
    template = RequestTemplate(model=model)
    rate = measure_tokens(rendered(template, 3), template, None)
    assert rate.tokens_per_byte == pytest.approx(1 / ratio)
    assert rate.method.startswith(LOCAL_METHOD)
    assert "bytes" in rate.method
    assert f", {ratio} (" in rate.method
    assert rate.sample_size == 0


def test_count_tokens_on_the_sample_scales_to_the_run_by_bytes() -> None:
    template = RequestTemplate(model="claude-haiku-4-5", max_tokens=50, system="Sys")
    sample = rendered(template, 5)
    seen: list[dict] = []

    def count_tokens(params: dict) -> int:
        seen.append(params)
        return 110

    rate = measure_tokens(sample, template, count_tokens)
    assert len(seen) == 5
    assert set(seen[0]) == {"model", "messages", "system"}, "max_tokens is not sent to count_tokens"
    assert rate.tokens_per_byte == pytest.approx(5 * 110 / sum(r.size for r in sample))
    assert rate.method.startswith("count_tokens on a sample of 5")
    assert rate.sample_size == 5


def test_a_failing_token_counter_falls_back_to_the_local_estimate() -> None:
    template = RequestTemplate(model="claude-haiku-4-5")

    def unreachable(params: dict) -> int:
        raise ConnectionError("no route")

    rate = measure_tokens(rendered(template, 2), template, unreachable)
    assert rate.tokens_per_byte == 0.25
    assert "count_tokens failed: ConnectionError" in rate.method
    assert measure_tokens(rendered(template, 2), template, lambda params: "many").tokens_per_byte == 0.25


def test_the_cached_prefix_is_measured_on_its_own() -> None:
    template = RequestTemplate(model="claude-haiku-4-5", system="S" * 4000, cache_system="1h")

    def count_tokens(params: dict) -> int:
        return 7 + (1000 if "system" in params else 0)

    rate = measure_tokens(rendered(template, 3), template, count_tokens)
    assert rate.cached_prefix_tokens == 1000
    local = measure_tokens(rendered(template, 3), template, None)
    assert local.cached_prefix_tokens == 1000  # 4000 bytes / 4


def test_count_tokens_params_keep_what_the_endpoint_takes() -> None:
    params = {"model": "m", "max_tokens": 5, "messages": [], "tools": [], "temperature": 0.3, "stream": False}
    assert count_tokens_params(params) == {"model": "m", "messages": [], "tools": []}
