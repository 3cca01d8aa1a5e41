"""The estimate's arithmetic for one group of requests: the expected figure, the upper bound, the gap.

A group holds a shard's requests of one model, cache lifetime and ``inference_geo`` (see
:class:`~airflow_claude_batch.core.requests.sharding.GroupTally`). The expected figure writes the cacheable
prefix for ``1 - h`` of the requests and reads it for ``h``, with the expected output and the answered
fractions; the upper bound takes every request's ``max_tokens``, no cache hit, input by the bound of
:class:`~airflow_claude_batch.core.money.input_tokens.TokenRate` (never the sample's mean) and the
prompt-length
tier of the group's largest request. Every figure is priced by the money meter. The gap between the two
is split into its parts (``GAP_PARTS``). Warnings are kept for a prefix too short to cache and a cache
lifetime that cannot pay off at the expected hit rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from airflow_claude_batch.core.money.expected_rates import DEFAULT_OUTPUT_FRACTION, Expectation
from airflow_claude_batch.core.money.input_tokens import TokenRate
from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.requests.cache_prefix import break_even_hit_rate, min_cacheable_tokens
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sharding import GroupTally

#: The parts of the gap between the upper bound and the expected figure, in the order they are added.
GAP_PARTS = ("answered", "output", "cache", "input", "sync_retry")


@dataclass
class GroupSums:
    """Requests, tokens and dollars of one group (or a sum of groups): both figures and the gap."""

    requests: int = 0
    input_tokens: int = 0
    prefix_tokens: int = 0
    output_upper: int = 0
    output_expected: float = 0.0
    upper_batch: float = 0.0
    upper_standard: float = 0.0
    expected_batch: float = 0.0
    expected_standard: float = 0.0
    gap_answered: float = 0.0
    gap_output: float = 0.0
    gap_cache: float = 0.0
    gap_input: float = 0.0
    gap_sync_retry: float = 0.0

    def add(self, other: GroupSums) -> None:
        for item in dataclasses.fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def gap(self) -> dict[str, float]:
        return {part: getattr(self, f"gap_{part}") for part in GAP_PARTS}


class GroupPricer:
    """Prices one group of requests (one model, cache lifetime and region) for the estimate.

    :param rate: input tokens per byte and the counted cacheable prefix.
    :param template: the run's template.
    :param prices: the price table.
    :param expectation: what the expected figure expects (output, hit rate, answered fractions).
    :param retry_errored_sync: the upper bound prices every answer at standard prices.
    """

    def __init__(
        self,
        rate: TokenRate,
        template: RequestTemplate,
        prices: PriceTable,
        expectation: Expectation,
        *,
        retry_errored_sync: bool = False,
    ) -> None:
        self.rate = rate
        self.template = template
        self.prices = prices
        self.sync = retry_errored_sync
        self.expect = expectation
        self.warnings: dict[str, str] = {}
        self.meters = {True: MoneyMeter(prices, batch=True), False: MoneyMeter(prices, batch=False)}

    def _prefix_per_request(self, model: str, ttl: str | None, group: GroupTally) -> float:
        if not ttl or not group.cache_prefix_bytes:
            return 0.0
        if self._prefix_counted:
            prefix = float(self.rate.cached_prefix_tokens)  # counted with count_tokens
        else:
            prefix = group.cache_prefix_bytes / group.requests * self.rate.tokens_per_byte
        minimum, known = min_cacheable_tokens(model)
        if prefix * self.expect.input_ratio < minimum:
            where = "" if known else " (the model catalogue does not know the model; assumed)"
            self.warnings[f"min:{model}"] = (
                f"{model}: the cacheable prefix is about {round(prefix):,} tokens, under the model's minimum "
                f"of {minimum:,}{where}, so it is not cached: priced as plain input"
            )
            return 0.0
        return prefix

    @property
    def _prefix_counted(self) -> bool:
        return self.template.render is None and bool(self.rate.cached_prefix_tokens)

    def price(self, key: tuple[str, str | None, str | None], group: GroupTally) -> GroupSums:
        model, ttl, geo = key
        n = group.requests
        request = {"inference_geo": geo} if geo else None
        raw_input = group.request_bytes * self.rate.tokens_per_byte
        bound_input = self.rate.upper_tokens(group.request_bytes, group.non_ascii_bytes)
        prefix = min(self._prefix_per_request(model, ttl, group) * n, raw_input)
        # The upper bound's prefix: counted exactly, or scaled from bytes as its input is.
        bound_prefix = prefix if self._prefix_counted or not raw_input else prefix * bound_input / raw_input
        largest = group.largest_request_bytes * self.rate.upper_other
        expect = self.expect
        if expect.output_per_request is None:
            output = DEFAULT_OUTPUT_FRACTION * group.max_tokens
        else:
            output = min(expect.output_per_request * n, group.max_tokens)
        if prefix:
            self._check_break_even(model, ttl)

        def cost(hit: float, out: float, ratio: float, *, batch: bool = True, bound: bool = False) -> float:
            if bound:  # the upper bound: input by the bound, never below the learned ratio's
                total_input = max(bound_input, raw_input * ratio)
                cached = max(bound_prefix, prefix * ratio)
            else:
                total_input, cached = raw_input * ratio, prefix * ratio
            totals = TokenTotals(
                input=round(total_input - cached),
                output=round(out),
                cache_write_5m=round((1 - hit) * cached) if ttl != "1h" else 0,
                cache_write_1h=round((1 - hit) * cached) if ttl == "1h" else 0,
                cache_read=round(hit * cached),
            )
            prompt = round(total_input / n) if n else None
            if bound:
                prompt = max(prompt or 0, round(largest * max(ratio, 1.0)))
            meter = self.meters[batch]
            return meter.cost(meter.rate_of(model, prompt, request), totals)

        h, r = expect.hit_rate, expect.input_ratio
        all_batch = cost(h, output, r)
        expected = expect.answered_batch * all_batch + expect.answered_sync * cost(h, output, r, batch=False)
        with_max_output = cost(h, group.max_tokens, r)
        no_hits = cost(0.0, group.max_tokens, r)
        upper_ratio = max(r, 1.0)
        upper_batch = cost(0.0, group.max_tokens, upper_ratio, bound=True)
        upper_standard = cost(0.0, group.max_tokens, upper_ratio, batch=False, bound=True)
        upper = upper_standard if self.sync else upper_batch
        return GroupSums(
            requests=n,
            input_tokens=round(raw_input),
            prefix_tokens=round(prefix),
            output_upper=group.max_tokens,
            output_expected=output,
            upper_batch=upper,
            upper_standard=upper_standard,
            expected_batch=expected,
            expected_standard=expect.answered_batch * cost(h, output, r, batch=False)
            + expect.answered_sync * cost(h, output, r, batch=False),
            gap_answered=all_batch - expected,
            gap_output=with_max_output - all_batch,
            gap_cache=no_hits - with_max_output,
            gap_input=upper_batch - no_hits,
            gap_sync_retry=upper - upper_batch,
        )

    def _check_break_even(self, model: str, ttl: str | None) -> None:
        cache = self.prices.cache_multipliers(model)
        write = cache.write_1h if ttl == "1h" else cache.write_5m
        even = break_even_hit_rate(write, cache.read)
        if self.expect.hit_rate < even:
            self.warnings[f"ttl:{model}:{ttl}"] = (
                f"{model}: {ttl} cache writes cost {write:g}x the input price and pay off above a "
                f"{even:.0%} hit rate; the expected hit rate is {self.expect.hit_rate:.0%} "
                f"({self.expect.basis['kind']}), so caching is expected to cost more than it saves"
                + (
                    ": try cache_system='5m'"
                    if ttl == "1h" and self.expect.hit_rate >= break_even_hit_rate(cache.write_5m, cache.read)
                    else ""
                )
            )
