"""Prices: the price data of every model (rates, tiers, cache multiples, multipliers), no dollar arithmetic.

The table only holds and looks up prices; tokens become dollars in one place, the money meter
(:class:`~airflow_claude_batch.core.money.money_meter.MoneyMeter`).

Prices live in ``prices.json`` next to this module, with the day they were read (``as_of``) and the
pricing page they were read from (``source``): standard prices per million tokens per model, the batch
multiplier, the cache multipliers (a model's own where it differs), prompt-length tiers (long-context
prices, where a model has them), the multipliers request params can trigger (data residency:
``inference_geo="us"``), and what the table does not model (``not_modelled``). Users extend or override
any of it with a file of the same shape, passed as a path or named by the environment variable
``CLAUDE_BATCH_PRICES_FILE``; the entries of that file replace the shipped ones and the rest stay.

A run freezes the table it was estimated with (:meth:`PriceTable.to_document`, in ``estimate.json``);
its ledger is computed with those prices, whatever prices are loaded when the report runs.

Model names are matched after normalisation, so ``claude-sonnet-4-6``, ``claude-sonnet-4.6``,
``claude-haiku-4-5-20251001``, ``claude-sonnet-4-0`` (for ``claude-sonnet-4``), ``anthropic/claude-...``
and cloud ids such as ``us.anthropic.claude-sonnet-4-6-v1:0`` or ``claude-sonnet-4-6@20250929`` all find
their family's prices.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.model_catalogue import did_you_mean
from airflow_claude_batch.core.api.model_prices import (
    CacheMultipliers,
    ModelPrice,
    Multiplier,
    model_price,
    parse_price,
)
from airflow_claude_batch.core.api.shipped_files import override_path, read_override, read_shipped
from airflow_claude_batch.exceptions import InputError

__all__ = [
    "PRICES_ENV_VAR",
    "PriceTable",
    "canonical_model_name",
]

PRICES_ENV_VAR = "CLAUDE_BATCH_PRICES_FILE"
SHIPPED_PRICES = "prices.json (shipped with airflow_claude_batch)"
PRICES_SCHEMA_VERSION = 2

_DATE_SUFFIX = re.compile(r"-\d{8}$")
_CLOUD_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")


@functools.lru_cache(maxsize=1024)  # called for every answer row; a run names a handful of models
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
class PriceTable:
    """Model prices, the batch multiplier, the prompt cache's multipliers and the documented surcharges.

    :param models: standard prices keyed by canonical model name (see :func:`canonical_model_name`).
    :param batch_multiplier: batch price as a fraction of the standard price (0.5).
    :param cache_write_5m: a 5-minute cache write as a multiple of the input price (1.25).
    :param cache_write_1h: a 1-hour cache write as a multiple of the input price (2.0).
    :param cache_read: a cache read as a multiple of the input price (0.1).
    :param multipliers: factors that request params can trigger (``inference_geo="us"``).
    :param as_of: the day the prices were read from ``source``.
    :param source: the pricing page the prices were read from.
    :param not_modelled: what the prices leave out, in words.
    :param sources: the files the table was loaded from, for messages.
    """

    models: Mapping[str, ModelPrice]
    batch_multiplier: float = 0.5
    cache_write_5m: float = 1.25
    cache_write_1h: float = 2.0
    cache_read: float = 0.1
    multipliers: tuple[Multiplier, ...] = ()
    as_of: str | None = None
    source: str | None = None
    not_modelled: tuple[str, ...] = ()
    sources: tuple[str, ...] = (SHIPPED_PRICES,)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Any | None = None) -> PriceTable:
        """Load the shipped prices, overlaid with a user's prices file when there is one.

        :param path: a prices file (a local path, or a path-like object with ``open``); when ``None``,
            the file named by ``CLAUDE_BATCH_PRICES_FILE`` if set.
        :raises InputError: the user's file is missing or not a valid prices file.
        """
        table = cls.from_document(read_shipped("prices.json"), SHIPPED_PRICES)
        override = override_path(path, PRICES_ENV_VAR)
        if override is None:
            return table
        document = read_override(override, kind="prices", hint=f"prices_file= or {PRICES_ENV_VAR}")
        return table.overlay(document, str(override))

    @classmethod
    def from_document(cls, document: Mapping[str, Any], source: str) -> PriceTable:
        """A table from one prices document (a prices file, or the prices frozen into a run).

        :param document: a parsed prices document.
        :param source: where it came from, for messages.
        """
        return cls(models={}, sources=()).overlay(document, source)

    def overlay(self, document: Mapping[str, Any], source: str) -> PriceTable:
        """Return this table with the prices and multipliers of ``document`` (a prices file) on top.

        Every key is optional: a model's entry replaces that model's, a ``multipliers`` entry replaces
        that field's values, ``as_of``, ``source`` and ``not_modelled`` replace the table's.

        :param document: a parsed prices file.
        :param source: where ``document`` came from, for messages.
        """
        try:
            models = dict(self.models)
            for name, price in (document.get("models") or {}).items():
                models[canonical_model_name(name)] = model_price(price)
            cache = document.get("cache_multipliers") or {}
            multipliers = {(m.field, m.value): m for m in self.multipliers}
            for field_name, values in (document.get("multipliers") or {}).items():
                for value, spec in values.items():
                    multipliers[(field_name, value)] = Multiplier(
                        field_name,
                        value,
                        parse_price(spec["factor"]),
                        tuple(canonical_model_name(m) for m in spec.get("models") or ()),
                    )
            not_modelled = document.get("not_modelled", self.not_modelled)
            return PriceTable(
                models=models,
                batch_multiplier=parse_price(document.get("batch_multiplier", self.batch_multiplier)),
                cache_write_5m=parse_price(cache.get("write_5m", self.cache_write_5m)),
                cache_write_1h=parse_price(cache.get("write_1h", self.cache_write_1h)),
                cache_read=parse_price(cache.get("read", self.cache_read)),
                multipliers=tuple(multipliers.values()),
                as_of=_text(document.get("as_of", self.as_of)),
                source=_text(document.get("source", self.source)),
                not_modelled=tuple(str(item) for item in not_modelled),
                sources=(*self.sources, source),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"the prices file {source} is not valid ({exc!r}); follow the shape of the shipped "
                'prices.json: {"models": {"claude-...": {"input": 3.0, "output": 15.0}}}'
            ) from exc

    def to_document(self) -> dict[str, Any]:
        """The whole table as one prices document, to freeze into a run (``estimate.json``, manifest)."""
        models: dict[str, Any] = {}
        for name, price in sorted(self.models.items()):
            entry: dict[str, Any] = {"input": price.input, "output": price.output}
            if price.cache is not None:
                entry["cache_multipliers"] = dataclasses.asdict(price.cache)
            if price.prompt_tiers:
                entry["prompt_tiers"] = [dataclasses.asdict(tier) for tier in price.prompt_tiers]
            models[name] = entry
        multipliers: dict[str, dict[str, Any]] = {}
        for item in self.multipliers:
            multipliers.setdefault(item.field, {})[item.value] = {
                "factor": item.factor,
                "models": list(item.models),
            }
        return {
            "schema_version": PRICES_SCHEMA_VERSION,
            "as_of": self.as_of,
            "source": self.source,
            "loaded_from": list(self.sources),
            "batch_multiplier": self.batch_multiplier,
            "cache_multipliers": dataclasses.asdict(self.cache_multipliers(None)),
            "multipliers": multipliers,
            "models": models,
            "not_modelled": list(self.not_modelled),
        }

    def price(self, model: str) -> ModelPrice:
        """Standard prices of ``model``.

        :raises InputError: the model is not in the table; the message names the files to extend.
        """
        found = self.models.get(canonical_model_name(model))
        if found is None:
            raise InputError(
                f"no price for model {model!r}{did_you_mean(model)} in {', '.join(self.sources)}; fix "
                "model=, or add it to a prices file "
                f'({{"models": {{"{canonical_model_name(model)}": {{"input": ..., "output": ...}}}}}}, USD '
                f"per million tokens at standard prices) and pass it as prices_file= or set {PRICES_ENV_VAR}"
            )
        return found

    def cache_multipliers(self, model: str | None) -> CacheMultipliers:
        """The cache multipliers of ``model`` (its own where it has them), or the table's default."""
        if model is not None:
            own = self.price(model).cache
            if own is not None:
                return own
        return CacheMultipliers(self.cache_write_5m, self.cache_write_1h, self.cache_read)

    def factor(self, model: str, *sources: Mapping[str, Any] | None) -> float:
        """The product of the multipliers that ``sources`` (request params, a usage object) trigger.

        For each field (``inference_geo``) the largest factor among the values the sources set applies,
        so a request that asked for US-only inference is priced so whether or not its usage says it.

        :param model: the model id.
        :param sources: anything with the fields a multiplier names; ``None`` entries are skipped.
        """
        if not self.multipliers:
            return 1.0
        name = canonical_model_name(model)
        by_field: dict[str, float] = {}
        for item in self.multipliers:
            if item.models and name not in item.models:
                continue
            if any(source and source.get(item.field) == item.value for source in sources):
                by_field[item.field] = max(by_field.get(item.field, 1.0), item.factor)
        factor = 1.0
        for value in by_field.values():
            factor *= value
        return factor


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
