"""The cost estimate made before anything is submitted: an expected figure and an upper bound.

Input tokens. With a ``count_tokens`` callable (the connection's token-counting endpoint), a uniform
sample of about 20 requests spread over the whole run is counted, and the run's input tokens are the
run's request bytes times the sample's tokens per byte (a ratio estimate, so long and short requests
weigh as they should). Without it, or when it fails, the local estimate is **UTF-8 bytes of each
request's JSON divided by the model's characters per token** (``chars_per_token`` in the model
catalogue, 4 when the model is not in it): a rough figure that overcounts the JSON around short prompts
and undercounts scripts such as Chinese or Japanese. ``estimate.json`` says which was used in ``method``.

The expected figure learns from earlier runs of the same pipeline (their manifests, see
:mod:`~airflow_claude_batch.core.money.cost_history`): output tokens per answer, the cache hit rate, the
input tokens billed against the input estimated, and how many requests ended answered in a batch or by
a synchronous retry. Without history it uses ``expected_output_tokens`` per request when set, else
**half of** ``max_tokens`` (``DEFAULT_OUTPUT_FRACTION``), and a hit rate of **64 %**
(:data:`~airflow_claude_batch.core.requests.cache_prefix.DEFAULT_HIT_RATE`); ``estimate.json`` records which
(``basis``) and the figures used (``inputs``).

Prompt caching. ``cache_control`` anywhere in a rendered request (tools, system, messages, or the top
level) marks its cacheable prefix (:mod:`~airflow_claude_batch.core.requests.cache_prefix`). A prefix
shorter than
its model's minimum cacheable length is priced as plain input. The expected figure writes the prefix
for ``1 - h`` of the requests and reads it for ``h`` (``h``: the expected hit rate); the upper bound
assumes no hit at all, so every request writes its prefix. A warning is recorded when the TTL cannot
pay off at the expected hit rate (the break-even, about 53 % for 1-hour writes and 22 % for 5-minute).

The upper bound also takes every request's ``max_tokens``; input tokens by a conservative rule, never
the sample's mean (one token per byte without ``count_tokens``; with it, the densest sampled request's
tokens per byte plus 25 % for ASCII and one token per byte outside ASCII: see
:mod:`~airflow_claude_batch.core.money.input_tokens`), more when history shows the input estimate was low;
the prompt-length tier of each group's largest request; each shard's marker request (one per batch,
``max_tokens`` 1, its input at one token per byte, at the shard's dearest model: ``markers_usd``, in
both figures); every request answered (a request is billed at most once,
whichever round answers it, so requeue rounds add no answer; they are counted by pricing every request
as answered), and, with ``retry_errored_sync``, every answer at standard prices (the worst case: every
request errors in its batch and is answered synchronously).

Prices are batch prices (half the standard ones) from
:class:`~airflow_claude_batch.core.money.pricing.PriceTable`,
at the request's prompt-length tier and with the multipliers its params trigger (``inference_geo``);
the standard figures are given too, to show what the same work costs synchronously. The table used is
frozen into ``estimate.json`` (``prices``), and the run's ledger uses it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.money.cost_history import LearnedFigures, RunCost
from airflow_claude_batch.core.money.expected_rates import DEFAULT_OUTPUT_FRACTION, Expectation
from airflow_claude_batch.core.money.group_pricing import GroupPricer, GroupSums
from airflow_claude_batch.core.money.input_tokens import DEFAULT_SAMPLE_SIZE, MAX_TOKENS_PER_BYTE, TokenRate
from airflow_claude_batch.core.money.money_meter import MoneyMeter
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.requests.marker import MARKER_PREFIX, marker_line
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sharding import WrittenShard
from airflow_claude_batch.exceptions import InputError

ESTIMATE_SCHEMA_VERSION = 2
BUDGET_BASES = ("expected", "upper")
#: What ``max_cost_usd`` is compared with unless ``budget_basis`` says otherwise.
DEFAULT_BUDGET_BASIS = "expected"


@dataclass(frozen=True)
class EstimateOptions:
    """What the user tells the estimate.

    :param expected_output_tokens: the output a request is expected to use, when the pipeline has no
        history (``None``: half of ``max_tokens``).
    :param max_cost_usd: the budget of the run in US dollars (``None``: no limit).
    :param sample_size: requests counted with ``count_tokens``.
    :param budget_basis: ``"expected"`` (the default) compares the budget with the expected cost,
        ``"upper"`` with the upper bound.
    :param retry_errored_sync: whether errored requests may be retried synchronously at standard
        prices (the upper bound then prices every answer at standard prices).
    """

    expected_output_tokens: int | None = None
    max_cost_usd: float | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    budget_basis: str = DEFAULT_BUDGET_BASIS
    retry_errored_sync: bool = False

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
        if self.budget_basis not in BUDGET_BASES:
            raise InputError(
                f"budget_basis must be 'expected' or 'upper', got {self.budget_basis!r}: 'expected' compares "
                "max_cost_usd with the expected cost, 'upper' with the upper bound"
            )


@dataclass(frozen=True)
class CostEstimate:
    """The run's estimate, written to ``estimate.json`` at the run root.

    :param records: requests in the run.
    :param shards: shards (batches) in round 0.
    :param body_bytes: create-body bytes of all shards.
    :param method: how input tokens were estimated.
    :param sample_size: requests counted by ``count_tokens``.
    :param input_tokens: estimated input tokens (cached prefixes included), before any learning.
    :param cached_prefix_tokens: cacheable prefix tokens over the run (0 without cache).
    :param cache_ttl: ``"5m"``, ``"1h"``, ``"mixed"`` or ``None``.
    :param output_tokens_upper: the sum of ``max_tokens``.
    :param output_tokens_expected: the expected output tokens.
    :param expected_output_tokens: the user's figure per request, if set.
    :param upper_batch_usd: the upper bound in US dollars (batch prices, standard prices for the
        synchronous retries it allows).
    :param upper_standard_usd: the upper bound's tokens at standard prices.
    :param expected_batch_usd: the expected cost.
    :param expected_standard_usd: the expected tokens at standard prices.
    :param shard_upper_batch_usd: each shard's share of the upper bound.
    :param by_model: per model: requests, tokens and costs.
    :param max_cost_usd: the budget, if set.
    :param budget_basis: ``"expected"`` or ``"upper"``.
    :param basis: where the expected figure comes from: ``history`` / ``user`` / ``default``.
    :param inputs: the figures the expected cost used (hit rate, output per request, ...).
    :param gap_usd: what the gap between the upper bound and the expected figure is made of.
    :param warnings: what the user should look at (a TTL that cannot pay off, a prefix too short to cache).
    :param prices: the price table used, frozen (see :meth:`PriceTable.to_document`).
    :param price_sources: the prices files used.
    :param assumptions: what the figures assume, in words.
    :param dry_run: whether the build wrote no shard.
    :param markers_usd: the shards' marker requests at batch prices (in both figures).
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
    budget_basis: str
    basis: Mapping[str, Any]
    inputs: Mapping[str, Any]
    gap_usd: Mapping[str, float]
    warnings: tuple[str, ...]
    prices: Mapping[str, Any]
    price_sources: tuple[str, ...]
    assumptions: tuple[str, ...]
    dry_run: bool = False
    markers_usd: float = 0.0
    schema_version: int = ESTIMATE_SCHEMA_VERSION

    @property
    def budgeted_usd(self) -> float:
        """The figure the budget is compared with (see ``budget_basis``)."""
        return self.upper_batch_usd if self.budget_basis == "upper" else self.expected_batch_usd

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
        data["markers_usd"] = _usd(self.markers_usd)
        data["gap_usd"] = {key: _usd(value) for key, value in self.gap_usd.items()}
        for key in ("price_sources", "assumptions", "warnings"):
            data[key] = list(getattr(self, key))
        return data


def _usd(value: float) -> float:
    return round(value, 6)


def estimate_cost(
    shards: Sequence[WrittenShard],
    rate: TokenRate,
    template: RequestTemplate,
    prices: PriceTable,
    options: EstimateOptions,
    *,
    history: Sequence[RunCost] = (),
    dry_run: bool = False,
) -> CostEstimate:
    """Price the shards of a run.

    :param shards: the shards as the writer tallied them.
    :param rate: input tokens per byte and the counted system prefix (see :func:`measure_tokens`).
    :param template: the run's template.
    :param prices: the price table.
    :param options: the user's expected output, budget and its basis.
    :param history: earlier runs of the same pipeline, newest first (see
        :func:`~airflow_claude_batch.core.money.cost_history.pipeline_history`).
    :param dry_run: whether the shards were only counted.
    :raises InputError: a model has no price; the message names the prices file to extend.
    """
    expectation = Expectation.choose(options.expected_output_tokens, LearnedFigures.from_runs(history))
    pricer = GroupPricer(rate, template, prices, expectation, retry_errored_sync=options.retry_errored_sync)
    total = GroupSums()
    by_model: dict[str, GroupSums] = {}
    ttls: set[str] = set()
    shard_costs = []
    markers = {True: 0.0, False: 0.0}
    for shard in shards:
        shard_sums = GroupSums()
        for key, group in shard.groups.items():
            sums = pricer.price(key, group)
            shard_sums.add(sums)
            by_model.setdefault(key[0], GroupSums()).add(sums)
            if sums.prefix_tokens and key[1]:
                ttls.add(key[1])
        marker = {batch: marker_cost(shard, prices, batch=batch) for batch in markers}
        for batch, cost in marker.items():
            markers[batch] += cost
        shard_costs.append(shard_sums.upper_batch + marker[True])
        total.add(shard_sums)
    return CostEstimate(
        records=total.requests,
        shards=len(shards),
        body_bytes=sum(shard.body_bytes for shard in shards),
        method=rate.method,
        sample_size=rate.sample_size,
        input_tokens=total.input_tokens,
        cached_prefix_tokens=total.prefix_tokens,
        cache_ttl=None if not ttls else ttls.pop() if len(ttls) == 1 else "mixed",
        output_tokens_upper=total.output_upper,
        output_tokens_expected=round(total.output_expected),
        expected_output_tokens=options.expected_output_tokens,
        upper_batch_usd=total.upper_batch + markers[True],
        upper_standard_usd=total.upper_standard + markers[False],
        expected_batch_usd=total.expected_batch + markers[True],
        expected_standard_usd=total.expected_standard + markers[False],
        shard_upper_batch_usd=tuple(shard_costs),
        by_model={model: _model_summary(sums) for model, sums in sorted(by_model.items())},
        max_cost_usd=options.max_cost_usd,
        budget_basis=options.budget_basis,
        basis=expectation.basis,
        inputs=expectation.to_dict(),
        gap_usd=total.gap(),
        warnings=tuple(pricer.warnings.values()),
        prices=prices.to_document(),
        price_sources=prices.sources,
        assumptions=_assumptions(expectation, options),
        dry_run=dry_run,
        markers_usd=markers[True],
    )


def marker_cost(shard: WrittenShard, prices: PriceTable, *, batch: bool = True) -> float:
    """The bound of one shard's marker request: its input at one token per byte of its line, one output
    token, at the dearest model of the shard (the marker asks the shard's first request's model).

    :param shard: the shard as the writer tallied it (no marker for a shard without requests).
    :param prices: the price table.
    :param batch: batch prices (the marker is always in a batch) or standard prices (for the standard
        figures).
    """
    if not shard.groups:
        return 0.0
    meter = MoneyMeter(prices, batch=batch)
    costs = []
    for model, _, _ in shard.groups:
        line = marker_line(MARKER_PREFIX + "0" * (64 - len(MARKER_PREFIX)), model)
        tokens = TokenTotals(input=math.ceil(len(line) * MAX_TOKENS_PER_BYTE), output=1)
        costs.append(meter.cost(meter.rate_of(model, tokens.input), tokens))
    return max(costs)


def _model_summary(sums: GroupSums) -> dict[str, Any]:
    return {
        "requests": sums.requests,
        "input_tokens": sums.input_tokens,
        "cached_prefix_tokens": sums.prefix_tokens,
        "output_tokens_upper": sums.output_upper,
        "output_tokens_expected": round(sums.output_expected),
        "cost_usd_upper": _usd(sums.upper_batch),
        "cost_usd_expected_batch": _usd(sums.expected_batch),
    }


def _assumptions(expectation: Expectation, options: EstimateOptions) -> tuple[str, ...]:
    notes = ["batch prices are the standard prices times the batch multiplier (0.5 in the shipped prices)"]
    kind = expectation.basis["kind"]
    if kind == "history":
        notes.append(
            f"expected figure learned from {expectation.basis['runs']} earlier run(s) of the pipeline: "
            "output tokens per answer, cache hit rate, input billed per input estimated, answered fractions"
        )
    elif kind == "user":
        notes.append(
            "expected output = expected_output_tokens per request, capped by max_tokens (no history)"
        )
    else:
        notes.append(
            f"expected output = {DEFAULT_OUTPUT_FRACTION:.0%} of max_tokens per request (no history and no "
            "expected_output_tokens)"
        )
    notes.append(
        f"cacheable prefixes: expected = a read for {expectation.hit_rate:.0%} of the requests and a "
        "write for the rest; upper bound = a write for every request (cache hits in batches are best effort)"
    )
    upper = "upper bound = every request answered once with max_tokens of output, no cache hit"
    if options.retry_errored_sync:
        upper += ", at standard prices (retry_errored_sync: every answer may come from a synchronous retry)"
    notes.append(upper)
    return tuple(notes)
