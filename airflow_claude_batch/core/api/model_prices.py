"""One model's prices: base input and output, its own cache multipliers, prompt-length tiers; and the
multipliers request params can trigger (data residency). Read from a prices document's entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptTier:
    """Prices of a request whose input is above a length (long-context pricing).

    :param above_input_tokens: the tier applies when a request's input tokens (uncached, cache writes
        and reads together) are above this.
    :param input: price of an uncached input token in this tier.
    :param output: price of an output token in this tier.
    """

    above_input_tokens: int
    input: float
    output: float


@dataclass(frozen=True)
class CacheMultipliers:
    """Cache writes and reads as multiples of the input price.

    :param write_5m: a 5-minute cache write (1.25).
    :param write_1h: a 1-hour cache write (2.0).
    :param read: a cache read (0.1).
    """

    write_5m: float = 1.25
    write_1h: float = 2.0
    read: float = 0.1


@dataclass(frozen=True)
class ModelPrice:
    """Standard prices of one model family in USD per million tokens.

    :param input: price of an uncached input token.
    :param output: price of an output token.
    :param cache: the model's own cache multipliers, when they differ from the table's.
    :param prompt_tiers: prices for long prompts, by ascending threshold.
    """

    input: float
    output: float
    cache: CacheMultipliers | None = None
    prompt_tiers: tuple[PromptTier, ...] = ()

    def tier(self, prompt_tokens: int | None) -> int:
        """The index of the tier a request of ``prompt_tokens`` input falls in: 0 for the base prices."""
        index = 0
        for number, tier in enumerate(self.prompt_tiers, start=1):
            if prompt_tokens is not None and prompt_tokens > tier.above_input_tokens:
                index = number
        return index

    def rates(self, tier: int) -> tuple[float, float]:
        """Input and output prices of ``tier`` (0: the base prices)."""
        if tier == 0:
            return self.input, self.output
        chosen = self.prompt_tiers[tier - 1]
        return chosen.input, chosen.output


@dataclass(frozen=True)
class Multiplier:
    """A factor on every token of a request whose params set a field to a value (data residency).

    :param field: the params field (``inference_geo``).
    :param value: its value (``us``).
    :param factor: the factor (1.1).
    :param models: the canonical models it applies to.
    """

    field: str
    value: str
    factor: float
    models: tuple[str, ...]


def model_price(entry: Mapping[str, Any]) -> ModelPrice:
    cache = entry.get("cache_multipliers")
    tiers = sorted(
        (
            PromptTier(
                int(tier["above_input_tokens"]), parse_price(tier["input"]), parse_price(tier["output"])
            )
            for tier in entry.get("prompt_tiers") or ()
        ),
        key=lambda tier: tier.above_input_tokens,
    )
    return ModelPrice(
        input=parse_price(entry["input"]),
        output=parse_price(entry["output"]),
        cache=None
        if not cache
        else CacheMultipliers(
            parse_price(cache.get("write_5m", 1.25)),
            parse_price(cache.get("write_1h", 2.0)),
            parse_price(cache.get("read", 0.1)),
        ),
        prompt_tiers=tuple(tiers),
    )


def parse_price(value: Any) -> float:
    """Return a price or multiplier as a finite number >= 0.

    :raises ValueError: when it is not one.
    """
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"a price or multiplier must be a finite number >= 0, got {value!r}")
    return number
