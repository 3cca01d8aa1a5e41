"""The money meter: one way from tokens to US dollars, used by every figure of a run.

A row (one answer), a shard (the sum of its rows), a run (the ledger's totals), the estimate, a
synchronous retry and the requeue's budget all price tokens here, so a request costs the same wherever
it is counted. A price depends on:

- the model (its standard prices, its own cache multipliers);
- batch or standard prices (``batch``: the batch multiplier, 0.5);
- the request's prompt-length tier, from its input tokens (uncached, cache writes and reads together);
- cache writes (5-minute, 1-hour) and reads, each at its multiple of the input price;
- the multipliers the request triggers (data residency, ``inference_geo="us"``: 1.1x on the models the
  prices list). The field is read from the **request's params** (the fanout reads each request's
  line; a synchronous retry has its params) and from the **usage**, where the API reports it
  (``usage.inference_geo`` in the SDK's ``Usage``: the region where inference ran). For each field the
  largest factor of the values seen applies: a request that asked for US-only inference is never
  priced below it, whether or not the usage says so.

Rows keep the request's priced fields (``pricing_params``, only when the request sets one) so that the
ledger prices them again from the rows alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import read_json

#: The row field that keeps the request params a price depends on (``{"inference_geo": "us"}``).
PRICING_PARAMS = "pricing_params"
#: The token kinds of :class:`TokenTotals`, in the order the meter keeps their rates.
TOKEN_KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_MILLION = 1_000_000


class Rate(NamedTuple):
    """What decides the per-token prices of an answer: its model, prompt-length tier and multipliers."""

    model: str
    tier: int
    factor: float


class MoneyMeter:
    """Prices tokens of one kind of call (batch or standard), each rate's prices looked up once.

    The only place where tokens become dollars: the price table holds the prices (a model's rates, its
    tiers, cache multiples, the multipliers), the meter does the arithmetic. Cost is linear in tokens,
    so each rate's five per-token prices are computed once and every answer is priced with five
    multiplications.

    :param prices: the price table (the run's frozen prices, see :func:`run_prices`).
    :param batch: batch prices (a batch's answers) or standard prices (a synchronous call).
    """

    def __init__(self, prices: PriceTable, *, batch: bool = True) -> None:
        self.prices = prices
        self.batch = batch
        self._rates: dict[Rate, tuple[float, ...]] = {}
        #: The request fields a multiplier of the table names (``("inference_geo",)``), sorted.
        self.multiplier_fields = tuple(sorted({item.field for item in prices.multipliers}))

    def pricing_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The fields of a request's ``params`` that a multiplier of the table names (empty: none)."""
        if not params:
            return {}
        return {name: params[name] for name in self.multiplier_fields if params.get(name) is not None}

    def rate(
        self, model: str, usage: Mapping[str, Any] | None, request: Mapping[str, Any] | None = None
    ) -> Rate:
        """The rate of one answer: its tier from the usage's input, its multipliers from the request's
        params and the usage (see the module's description)."""
        totals = TokenTotals.from_usage(usage)
        return self.rate_of(model, totals.total_input, request, usage)

    def rate_of(self, model: str, prompt_tokens: int | None, *sources: Mapping[str, Any] | None) -> Rate:
        """The rate of a request of ``prompt_tokens`` input whose ``sources`` (request params, usage)
        may set multiplier fields."""
        return Rate(model, self.prices.price(model).tier(prompt_tokens), self.prices.factor(model, *sources))

    def price(
        self, model: str, usage: Mapping[str, Any] | None, request: Mapping[str, Any] | None = None
    ) -> tuple[TokenTotals, float]:
        """One answer's tokens by kind and its cost in US dollars.

        :param model: the model that answered.
        :param usage: the answer's ``usage`` as a dict.
        :param request: the request's params (or its ``pricing_params``), for its multipliers.
        :raises InputError: the model has no price (the message says how to add one).
        """
        totals = TokenTotals.from_usage(usage)
        return totals, self.cost(self.rate_of(model, totals.total_input, request, usage), totals)

    def cost(self, rate: Rate, totals: TokenTotals) -> float:
        """US dollars of ``totals`` tokens at ``rate``."""
        rates = self._rates.get(rate) or self._load(rate)
        return (
            totals.input * rates[0]
            + totals.output * rates[1]
            + totals.cache_write_5m * rates[2]
            + totals.cache_write_1h * rates[3]
            + totals.cache_read * rates[4]
        )

    def _load(self, rate: Rate) -> tuple[float, ...]:
        """The five per-token prices of ``rate``, in the order of :data:`TOKEN_KINDS`: the tier's input
        and output prices, cache writes and reads at the model's multiples of its input price, times the
        request's multipliers and (for a batch) the batch multiplier, per token."""
        input_price, output_price = self.prices.price(rate.model).rates(rate.tier)
        cache = self.prices.cache_multipliers(rate.model)
        per_token = rate.factor / _MILLION
        if self.batch:
            per_token *= self.prices.batch_multiplier
        rates = (
            input_price * per_token,
            output_price * per_token,
            input_price * cache.write_5m * per_token,
            input_price * cache.write_1h * per_token,
            input_price * cache.read * per_token,
        )
        self._rates[rate] = rates
        return rates


def run_prices(folder: RunFolder, loaded: PriceTable) -> PriceTable:
    """The prices the run's build froze into ``estimate.json``; ``loaded`` when it froze none.

    Every figure of a run (rows, shards, the ledger, synchronous retries) uses these, so a prices file
    changed between the build and the report changes no figure of a run already built.
    """
    estimate = read_json(folder.estimate)
    frozen = estimate.get("prices") if isinstance(estimate, dict) else None
    if not isinstance(frozen, dict) or not frozen.get("models"):
        return loaded
    return PriceTable.from_document(frozen, f"{folder.estimate} (as of {frozen.get('as_of')})")
