"""The cost estimate made before anything is submitted, and the budget guard.

Input tokens. With a ``count_tokens`` callable (the connection's token-counting endpoint), a uniform
sample of about 20 requests spread over the whole run is counted, and the run's input tokens are the
run's request bytes times the sample's tokens per byte (a ratio estimate, so long and short requests
weigh as they should). Without it, or when it fails, the local estimate is **UTF-8 bytes of each
request's JSON divided by 4**: a rough figure that overcounts the JSON around short prompts and
undercounts scripts such as Chinese or Japanese. ``estimate.json`` says which was used in ``method``.

Output tokens. The upper bound is every request's ``max_tokens``; the expected figure uses
``expected_output_tokens`` per request (capped by ``max_tokens``) when the user sets it, else the same
upper bound.

Prompt caching (``cache_system``). The system prompt's tokens are the cached prefix of every request.
The expected cost counts one cache write per shard (each shard is a batch, processed on its own) and a
cache read for every other request, which assumes the cache is hit; hits in batches are best effort.
The upper bound assumes no hit at all: every request writes its prefix (1.25x or 2x the input price).
Requests whose params come from a ``render`` callable are priced as plain input, whatever
``cache_control`` they carry.

Prices are batch prices (half the standard ones) from :class:`~airflow_claude_batch.batch.pricing.PriceTable`;
the standard figures are given too, to show what the same work costs synchronously.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.batch.encoding import decode_request
from airflow_claude_batch.batch.pricing import PriceTable, TokenTotals
from airflow_claude_batch.batch.rendering import EncodedRequest, RequestTemplate
from airflow_claude_batch.batch.sharding import GroupTally, WrittenShard
from airflow_claude_batch.exceptions import BudgetExceededError, InputError

ESTIMATE_SCHEMA_VERSION = 1
DEFAULT_SAMPLE_SIZE = 20
LOCAL_BYTES_PER_TOKEN = 4
LOCAL_METHOD = "local: UTF-8 bytes of each request's JSON / 4"
#: The Messages params that the token-counting endpoint accepts; the rest (max_tokens, temperature,
#: metadata...) does not change the input and is left out.
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")

TokenCounter = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True)
class EstimateOptions:
    """What the user tells the estimate.

    :param expected_output_tokens: the output a request is expected to use (``None``: ``max_tokens``).
    :param max_cost_usd: the budget of the run at batch prices (``None``: no limit).
    :param sample_size: requests counted with ``count_tokens``.
    """

    expected_output_tokens: int | None = None
    max_cost_usd: float | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE

    def __post_init__(self) -> None:
        expected = self.expected_output_tokens
        if expected is not None and (
            isinstance(expected, bool) or not isinstance(expected, int) or expected < 0
        ):
            raise InputError(f"expected_output_tokens must be a whole number >= 0, got {expected!r}")
        budget = self.max_cost_usd
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
                raise InputError(f"max_cost_usd must be a number of US dollars, got {budget!r}")
            if budget < 0:
                raise InputError(
                    f"max_cost_usd is negative ({budget}); set the most the run may cost in US dollars, "
                    "or None for no limit"
                )
        if (
            isinstance(self.sample_size, bool)
            or not isinstance(self.sample_size, int)
            or self.sample_size < 1
        ):
            raise InputError(f"sample_size must be a whole number >= 1, got {self.sample_size!r}")


class ReservoirSample:
    """A uniform random sample of fixed size from a stream of unknown length (Algorithm L).

    Each item costs a counter increment; random numbers are drawn only for the few items taken, so
    sampling a million requests is nearly free. Seeded, so a rerun samples the same requests.

    :param size: how many items to keep.
    :param seed: the random seed.
    """

    def __init__(self, size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> None:
        self.size = size
        self.items: list[EncodedRequest] = []
        self.seen = 0
        self._random = random.Random(seed)
        self._weight = 1.0
        self._next = size

    def offer(self, item: EncodedRequest) -> None:
        """Consider one item of the stream."""
        position = self.seen
        self.seen = position + 1
        if position < self.size:
            self.items.append(item)
            if position == self.size - 1:
                self._weight = self._draw_weight()
                self._next = position + self._skip()
        elif position == self._next:
            self.items[self._random.randrange(self.size)] = item
            self._weight *= self._draw_weight()
            self._next = position + self._skip()

    def _draw_weight(self) -> float:
        return math.exp(math.log(self._uniform()) / self.size)

    def _skip(self) -> int:
        if self._weight >= 1.0:
            return 1
        return int(math.log(self._uniform()) / math.log1p(-self._weight)) + 1

    def _uniform(self) -> float:
        return self._random.random() or 1e-300


@dataclass(frozen=True)
class TokenRate:
    """How request bytes turn into input tokens.

    :param tokens_per_byte: input tokens per request byte.
    :param cached_prefix_tokens: tokens of the cached system prompt in each request (0 without cache).
    :param method: how the figures were obtained, for ``estimate.json``.
    :param sample_size: requests counted (0 for the local estimate).
    """

    tokens_per_byte: float
    cached_prefix_tokens: int
    method: str
    sample_size: int


def measure_tokens(
    sample: Sequence[EncodedRequest], template: RequestTemplate, count_tokens: TokenCounter | None
) -> TokenRate:
    """Count the sample's input tokens with ``count_tokens``, or fall back to the local estimate.

    :param sample: requests drawn over the run.
    :param template: the run's template (its cached system prompt is measured on its own).
    :param count_tokens: ``params -> input_tokens``, or ``None``.
    """
    reason = "no token counter"
    if count_tokens is not None and sample:
        try:
            return _counted_rate(sample, template, count_tokens)
        except Exception as exc:  # any failure of an optional service falls back to the local figure
            reason = f"count_tokens failed: {type(exc).__name__}"
    prefix = 0
    if template.cache_system and template.system:
        prefix = math.ceil(len(template.system.encode("utf-8")) / LOCAL_BYTES_PER_TOKEN)
    return TokenRate(1 / LOCAL_BYTES_PER_TOKEN, prefix, f"{LOCAL_METHOD} ({reason})", 0)


def _counted_rate(
    sample: Sequence[EncodedRequest], template: RequestTemplate, count_tokens: TokenCounter
) -> TokenRate:
    tokens = sum(
        _checked_count(count_tokens(count_tokens_params(decode_request(r.line)["params"]))) for r in sample
    )
    request_bytes = sum(r.size for r in sample)
    prefix = 0
    if template.cache_system and template.system:
        model = template.model or sample[0].model
        stub = [{"role": "user", "content": "."}]
        with_system = count_tokens({"model": model, "system": template.system_param(), "messages": stub})
        without = count_tokens({"model": model, "messages": stub})
        prefix = max(_checked_count(with_system) - _checked_count(without), 0)
    method = f"count_tokens on a sample of {len(sample)} requests, scaled to the run by request bytes"
    return TokenRate(tokens / max(request_bytes, 1), prefix, method, len(sample))


def _checked_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"count_tokens returned {value!r}, not a token count")
    return value


def count_tokens_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The part of Messages params that the token-counting endpoint takes."""
    return {key: params[key] for key in COUNT_TOKENS_FIELDS if key in params}


@dataclass(frozen=True)
class CostEstimate:
    """The run's estimate, written to ``estimate.json`` at the run root.

    :param records: requests in the run.
    :param shards: shards (batches) in round 0.
    :param body_bytes: create-body bytes of all shards.
    :param method: how input tokens were estimated.
    :param sample_size: requests counted by ``count_tokens``.
    :param input_tokens: estimated input tokens (cached prefix included).
    :param cached_prefix_tokens: cached system-prompt tokens per request (0 without cache).
    :param cache_ttl: ``"5m"``, ``"1h"`` or ``None``.
    :param output_tokens_upper: the sum of ``max_tokens``.
    :param output_tokens_expected: the expected output tokens.
    :param expected_output_tokens: the user's figure per request, if set.
    :param upper_batch_usd: upper bound at batch prices (what the budget is checked against).
    :param upper_standard_usd: upper bound at standard prices.
    :param expected_batch_usd: expected cost at batch prices.
    :param expected_standard_usd: expected cost at standard prices.
    :param shard_upper_batch_usd: each shard's share of the upper bound at batch prices.
    :param by_model: per model: requests, tokens and costs.
    :param max_cost_usd: the budget, if set.
    :param price_sources: the prices files used.
    :param assumptions: what the figures assume, in words.
    :param dry_run: whether the build wrote no shard.
    """

    records: int
    shards: int
    body_bytes: int
    method: str
    sample_size: int
    input_tokens: int
    cached_prefix_tokens: int
    cache_ttl: str | None
    output_tokens_upper: int
    output_tokens_expected: int
    expected_output_tokens: int | None
    upper_batch_usd: float
    upper_standard_usd: float
    expected_batch_usd: float
    expected_standard_usd: float
    shard_upper_batch_usd: tuple[float, ...]
    by_model: Mapping[str, Mapping[str, Any]]
    max_cost_usd: float | None
    price_sources: tuple[str, ...]
    assumptions: tuple[str, ...]
    dry_run: bool = False
    schema_version: int = ESTIMATE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The ``estimate.json`` document."""
        data = dataclasses.asdict(self)
        for key in ("upper_batch_usd", "upper_standard_usd", "expected_batch_usd", "expected_standard_usd"):
            data.pop(key)
        data["cost_usd"] = {
            "upper_bound": {"batch": _usd(self.upper_batch_usd), "standard": _usd(self.upper_standard_usd)},
            "expected": {
                "batch": _usd(self.expected_batch_usd),
                "standard": _usd(self.expected_standard_usd),
            },
        }
        data["estimated_cost_usd_upper"] = _usd(self.upper_batch_usd)
        data["estimated_cost_usd_expected"] = _usd(self.expected_batch_usd)
        data["shard_upper_batch_usd"] = [_usd(cost) for cost in self.shard_upper_batch_usd]
        data["price_sources"] = list(self.price_sources)
        data["assumptions"] = list(self.assumptions)
        return data


def _usd(value: float) -> float:
    return round(value, 6)


@dataclass
class _Sums:
    requests: int = 0
    input_tokens: int = 0
    output_upper: int = 0
    output_expected: int = 0
    upper_batch: float = 0.0
    upper_standard: float = 0.0
    expected_batch: float = 0.0
    expected_standard: float = 0.0

    def add(self, other: _Sums) -> None:
        for item in dataclasses.fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


class _GroupPricer:
    def __init__(
        self, rate: TokenRate, template: RequestTemplate, prices: PriceTable, options: EstimateOptions
    ) -> None:
        self.rate = rate
        self.ttl = template.cache_system
        self.prices = prices
        self.expected_output = options.expected_output_tokens

    def price(self, model: str, cached: bool, group: GroupTally) -> _Sums:
        input_tokens = round(group.request_bytes * self.rate.tokens_per_byte)
        output_upper = group.max_tokens
        output_expected = output_upper
        if self.expected_output is not None:
            output_expected = min(self.expected_output * group.requests, output_upper)
        prefix = self.rate.cached_prefix_tokens * group.requests if cached and self.ttl else 0
        prefix = min(prefix, input_tokens)
        plain = input_tokens - prefix
        upper = self._totals(plain, output_upper, writes=prefix)
        # One write per shard (this group is within one shard), a read for every other request.
        one_write = prefix // group.requests if group.requests else 0
        expected = self._totals(plain, output_expected, writes=one_write, reads=prefix - one_write)
        return _Sums(
            requests=group.requests,
            input_tokens=input_tokens,
            output_upper=output_upper,
            output_expected=output_expected,
            upper_batch=self.prices.cost_of_totals(model, upper, batch=True),
            upper_standard=self.prices.cost_of_totals(model, upper, batch=False),
            expected_batch=self.prices.cost_of_totals(model, expected, batch=True),
            expected_standard=self.prices.cost_of_totals(model, expected, batch=False),
        )

    def _totals(self, plain: int, output: int, *, writes: int = 0, reads: int = 0) -> TokenTotals:
        write_1h = writes if self.ttl == "1h" else 0
        return TokenTotals(
            input=plain,
            output=output,
            cache_write_5m=writes - write_1h,
            cache_write_1h=write_1h,
            cache_read=reads,
        )


def estimate_cost(
    shards: Sequence[WrittenShard],
    rate: TokenRate,
    template: RequestTemplate,
    prices: PriceTable,
    options: EstimateOptions,
    *,
    dry_run: bool = False,
) -> CostEstimate:
    """Price the shards of a run.

    :param shards: the shards as the writer tallied them.
    :param rate: input tokens per byte and the cached prefix (see :func:`measure_tokens`).
    :param template: the run's template (its cache setting).
    :param prices: the price table.
    :param options: the user's expected output and budget.
    :param dry_run: whether the shards were only counted.
    :raises InputError: a model has no price; the message names the prices file to extend.
    """
    pricer = _GroupPricer(rate, template, prices, options)
    total = _Sums()
    by_model: dict[str, _Sums] = {}
    shard_costs = []
    for shard in shards:
        shard_sums = _Sums()
        for (model, cached), group in shard.groups.items():
            sums = pricer.price(model, cached, group)
            shard_sums.add(sums)
            by_model.setdefault(model, _Sums()).add(sums)
        shard_costs.append(shard_sums.upper_batch)
        total.add(shard_sums)
    return CostEstimate(
        records=total.requests,
        shards=len(shards),
        body_bytes=sum(shard.body_bytes for shard in shards),
        method=rate.method,
        sample_size=rate.sample_size,
        input_tokens=total.input_tokens,
        cached_prefix_tokens=rate.cached_prefix_tokens if template.cache_system else 0,
        cache_ttl=template.cache_system,
        output_tokens_upper=total.output_upper,
        output_tokens_expected=total.output_expected,
        expected_output_tokens=options.expected_output_tokens,
        upper_batch_usd=total.upper_batch,
        upper_standard_usd=total.upper_standard,
        expected_batch_usd=total.expected_batch,
        expected_standard_usd=total.expected_standard,
        shard_upper_batch_usd=tuple(shard_costs),
        by_model={model: _model_summary(sums) for model, sums in sorted(by_model.items())},
        max_cost_usd=options.max_cost_usd,
        price_sources=prices.sources,
        assumptions=_assumptions(template, options),
        dry_run=dry_run,
    )


def _model_summary(sums: _Sums) -> dict[str, Any]:
    return {
        "requests": sums.requests,
        "input_tokens": sums.input_tokens,
        "output_tokens_upper": sums.output_upper,
        "output_tokens_expected": sums.output_expected,
        "cost_usd_upper_batch": _usd(sums.upper_batch),
        "cost_usd_expected_batch": _usd(sums.expected_batch),
    }


def _assumptions(template: RequestTemplate, options: EstimateOptions) -> tuple[str, ...]:
    notes = ["batch prices are the standard prices times the batch multiplier (0.5 in the shipped prices)"]
    if options.expected_output_tokens is None:
        notes.append(
            "expected output = max_tokens per request (set expected_output_tokens for a closer figure)"
        )
    else:
        notes.append("expected output = expected_output_tokens per request, capped by max_tokens")
    if template.cache_system:
        notes.append(
            "cached system prompt: expected = one cache write per shard, then a cache read for every other "
            "request (cache hits in batches are best effort); upper bound = a cache write for every request"
        )
    if template.render is not None:
        notes.append("params from render are priced as plain input, whatever cache_control they carry")
    return tuple(notes)


def check_budget(estimate: CostEstimate) -> None:
    """Fail the run when its upper-bound cost at batch prices is over ``max_cost_usd``.

    :raises BudgetExceededError: with the figures and what to change.
    """
    budget = estimate.max_cost_usd
    if budget is None or estimate.upper_batch_usd <= budget:
        return
    expected = f"${estimate.expected_batch_usd:,.2f}"
    if estimate.expected_output_tokens is None:
        expected += " (with every request using its max_tokens; set expected_output_tokens to refine)"
    raise BudgetExceededError(
        f"the run's upper-bound cost is ${estimate.upper_batch_usd:,.2f} at batch prices, over "
        f"max_cost_usd=${budget:,.2f}: {estimate.records:,} requests in {estimate.shards} shard(s), "
        f"about {estimate.input_tokens:,} input tokens ({estimate.method}) and up to "
        f"{estimate.output_tokens_upper:,} output tokens (max_tokens); expected cost {expected}. "
        "Nothing was submitted. Raise max_cost_usd, lower max_tokens, or send fewer records."
    )
