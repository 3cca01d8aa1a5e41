"""Prices: US dollars from token usage, with cache writes and reads at their own rates.

Prices live in ``prices.json`` next to this module (standard prices per million tokens per model, the
batch multiplier, and the cache multipliers). Users extend or override it with a file of the same shape,
passed as a path or named by the environment variable ``CLAUDE_BATCH_PRICES_FILE``; the entries of that
file replace the shipped ones and the rest stay.

Model names are matched after normalisation, so ``claude-sonnet-4-6``, ``claude-sonnet-4.6``,
``claude-haiku-4-5-20251001``, ``claude-sonnet-4-0`` (for ``claude-sonnet-4``), ``anthropic/claude-...``
and cloud ids such as ``us.anthropic.claude-sonnet-4-6-v1:0`` or ``claude-sonnet-4-6@20250929`` all find
their family's prices.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from airflow_claude_batch.exceptions import InputError

PRICES_ENV_VAR = "CLAUDE_BATCH_PRICES_FILE"
SHIPPED_PRICES = "prices.json (shipped with airflow_claude_batch)"
_TOKENS_PER_UNIT = 1_000_000

_DATE_SUFFIX = re.compile(r"-\d{8}$")
_CLOUD_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")


def canonical_model_name(model: str) -> str:
    """Reduce a model id to the form the price table is keyed by (``claude-sonnet-4-6``).

    :param model: a model id as a user, the API or a cloud provider spells it.
    """
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]  # gateway prefixes such as "anthropic/"
    if "anthropic." in name:  # Bedrock ids and inference profiles: "us.anthropic.claude-..."
        name = name.split("anthropic.", 1)[1]
    name = name.split("@", 1)[0]  # Vertex AI: "claude-sonnet-4-5@20250929"
    name = _CLOUD_VERSION_SUFFIX.sub("", name)
    name = name.replace(".", "-").replace("_", "-")
    name = _DATE_SUFFIX.sub("", name)
    name = name.removesuffix("-latest")
    # "claude-sonnet-4-0" is the API's alias of "claude-sonnet-4".
    return name.removesuffix("-0")


@dataclass(frozen=True)
class ModelPrice:
    """Standard prices of one model family in USD per million tokens.

    :param input: price of an uncached input token.
    :param output: price of an output token.
    """

    input: float
    output: float


@dataclass(frozen=True)
class TokenTotals:
    """Tokens by the rate they are billed at.

    :param input: uncached input tokens.
    :param output: output tokens.
    :param cache_write_5m: input tokens written to the cache with the 5-minute lifetime.
    :param cache_write_1h: input tokens written to the cache with the 1-hour lifetime.
    :param cache_read: input tokens read from the cache.
    """

    input: int = 0
    output: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @classmethod
    def from_usage(cls, usage: Mapping[str, Any] | None) -> TokenTotals:
        """Read an API ``usage`` object (as a dict); absent or null fields count as zero.

        Cache creation is split by lifetime when ``cache_creation`` gives the split; whatever it does
        not account for (all of it when the split is absent) is priced at the 5-minute rate.

        :param usage: the ``usage`` of a Message, or ``None``.
        """
        if not usage:
            return cls()
        created = _count(usage, "cache_creation_input_tokens")
        split = usage.get("cache_creation") or {}
        write_1h = _count(split, "ephemeral_1h_input_tokens")
        write_5m = _count(split, "ephemeral_5m_input_tokens")
        write_5m += max(created - write_5m - write_1h, 0)
        return cls(
            input=_count(usage, "input_tokens"),
            output=_count(usage, "output_tokens"),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=_count(usage, "cache_read_input_tokens"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenTotals:
        """Read what :meth:`to_dict` wrote; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: int(value or 0) for key, value in data.items() if key in names})

    def __add__(self, other: TokenTotals) -> TokenTotals:
        if not isinstance(other, TokenTotals):
            return NotImplemented
        return TokenTotals(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )

    @property
    def total_input(self) -> int:
        """All input tokens: uncached, cache writes and cache reads."""
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _count(mapping: Mapping[str, Any], key: str) -> int:
    value = mapping.get(key)
    return int(value) if value else 0


@dataclass(frozen=True)
class PriceTable:
    """Model prices and the multipliers for batches and the prompt cache.

    :param models: standard prices keyed by canonical model name (see :func:`canonical_model_name`).
    :param batch_multiplier: batch price as a fraction of the standard price (0.5).
    :param cache_write_5m: a 5-minute cache write as a multiple of the input price (1.25).
    :param cache_write_1h: a 1-hour cache write as a multiple of the input price (2.0).
    :param cache_read: a cache read as a multiple of the input price (0.1).
    :param sources: where the prices came from, for messages.
    """

    models: Mapping[str, ModelPrice]
    batch_multiplier: float = 0.5
    cache_write_5m: float = 1.25
    cache_write_1h: float = 2.0
    cache_read: float = 0.1
    sources: tuple[str, ...] = (SHIPPED_PRICES,)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Any | None = None) -> PriceTable:
        """Load the shipped prices, overlaid with a user's prices file when there is one.

        :param path: a prices file (a local path, or a path-like object with ``open``); when ``None``,
            the file named by ``CLAUDE_BATCH_PRICES_FILE`` if set.
        :raises InputError: the user's file is missing or not a valid prices file.
        """
        shipped = orjson.loads(resources.files(__package__).joinpath("prices.json").read_bytes())
        table = cls._from_document(shipped, SHIPPED_PRICES)
        override = path if path is not None else os.environ.get(PRICES_ENV_VAR) or None
        if override is None:
            return table
        return table.overlay(_read_prices_file(override), str(override))

    @classmethod
    def _from_document(cls, document: Mapping[str, Any], source: str) -> PriceTable:
        return cls(models={}, sources=()).overlay(document, source)

    def overlay(self, document: Mapping[str, Any], source: str) -> PriceTable:
        """Return this table with the prices and multipliers of ``document`` (a prices file) on top.

        :param document: a parsed prices file.
        :param source: where ``document`` came from, for messages.
        """
        try:
            models = dict(self.models)
            for name, price in (document.get("models") or {}).items():
                models[canonical_model_name(name)] = ModelPrice(
                    input=_price(price["input"]), output=_price(price["output"])
                )
            cache = document.get("cache_multipliers") or {}
            return PriceTable(
                models=models,
                batch_multiplier=_price(document.get("batch_multiplier", self.batch_multiplier)),
                cache_write_5m=_price(cache.get("write_5m", self.cache_write_5m)),
                cache_write_1h=_price(cache.get("write_1h", self.cache_write_1h)),
                cache_read=_price(cache.get("read", self.cache_read)),
                sources=(*self.sources, source),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"the prices file {source} is not valid ({exc!r}); follow the shape of the shipped "
                'prices.json: {"models": {"claude-...": {"input": 3.0, "output": 15.0}}}'
            ) from exc

    def has_model(self, model: str) -> bool:
        """Whether the table prices ``model``."""
        return canonical_model_name(model) in self.models

    def price(self, model: str) -> ModelPrice:
        """Standard prices of ``model``.

        :raises InputError: the model is not in the table; the message names the files to extend.
        """
        found = self.models.get(canonical_model_name(model))
        if found is None:
            raise InputError(
                f"no price for model {model!r} in {', '.join(self.sources)}; add it to a prices file "
                f'({{"models": {{"{canonical_model_name(model)}": {{"input": ..., "output": ...}}}}}}, USD '
                f"per million tokens at standard prices) and pass it as prices_file= or set {PRICES_ENV_VAR}"
            )
        return found

    def cost_of_totals(self, model: str, totals: TokenTotals, batch: bool = True) -> float:
        """US dollars for ``totals`` of ``model``.

        :param model: the model id.
        :param totals: tokens by rate.
        :param batch: batch prices (the default) or standard prices.
        """
        price = self.price(model)
        input_units = (
            totals.input
            + totals.cache_write_5m * self.cache_write_5m
            + totals.cache_write_1h * self.cache_write_1h
            + totals.cache_read * self.cache_read
        )
        dollars = (input_units * price.input + totals.output * price.output) / _TOKENS_PER_UNIT
        return dollars * self.batch_multiplier if batch else dollars

    def cost_usd(self, model: str, usage: Mapping[str, Any], *, batch: bool = True) -> float:
        """US dollars for one API ``usage`` object of ``model`` (see :meth:`TokenTotals.from_usage`).

        :param model: the model id (as the request or the response names it).
        :param usage: the response's ``usage`` as a dict.
        :param batch: batch prices (the default) or standard prices.
        """
        return self.cost_of_totals(model, TokenTotals.from_usage(usage), batch=batch)


def _price(value: Any) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"a price or multiplier must be a finite number >= 0, got {value!r}")
    return number


def _read_prices_file(path: Any) -> Mapping[str, Any]:
    try:
        if isinstance(path, str) or not hasattr(path, "open"):
            data = Path(path).read_bytes()
        else:
            with path.open("rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise InputError(
            f"cannot read the prices file {path}: {exc}; check prices_file= or {PRICES_ENV_VAR}"
        ) from exc
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the prices file {path} is not valid JSON ({exc}); fix the file") from exc
    if not isinstance(document, dict):
        raise InputError(f"the prices file {path} must hold a JSON object with a 'models' object")
    return document
