"""The model catalogue: which Claude models exist and their limits, cache minimums and token ratios.

The catalogue lives in ``models.json`` next to this module. Users extend or override it with a file of
the same shape, passed as a path or named by the environment variable ``CLAUDE_BATCH_MODELS_FILE``:
an entry of that file for a known id replaces the fields it gives, a new id adds a model, the rest stay.

Model ids are matched exactly (case-sensitive, no normalisation), as the API matches them: an alias such
as ``claude-haiku-4-5`` finds its dated model, ``Claude-Haiku-4-5`` finds nothing. (Prices are looked
up more loosely, see :mod:`airflow_claude_batch.core.money.pricing`; the catalogue says what the API accepts.)
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_claude_batch.core.api.shipped_files import override_path, read_override, read_shipped
from airflow_claude_batch.exceptions import InputError

MODELS_ENV_VAR = "CLAUDE_BATCH_MODELS_FILE"
SHIPPED_MODELS = "models.json (shipped with airflow_claude_batch)"
# The release date the API reports for a model whose date is not known.
UNKNOWN_RELEASE = "1970-01-01T00:00:00Z"
_REQUIRED = (
    "display_name",
    "family",
    "max_output_tokens",
    "context_window",
    "min_cacheable_tokens",
    "chars_per_token",
)


@dataclass(frozen=True)
class ModelSpec:
    """What the package knows of one model.

    :param id: the model id the API lists (``claude-haiku-4-5-20251001``).
    :param display_name: the human-readable name (``Claude Haiku 4.5``).
    :param created_at: release date, RFC 3339; ``1970-01-01T00:00:00Z`` when not known.
    :param family: the model line: ``haiku``, ``sonnet``, ``opus`` and so on.
    :param max_output_tokens: the largest ``max_tokens`` a request may ask for.
    :param context_window: the most input tokens a request may hold.
    :param min_cacheable_tokens: the shortest prompt prefix, in tokens, that prompt caching stores.
    :param chars_per_token: characters per token for estimates (the model's tokenizer, on English text).
    :param supports_structured_output: whether ``output_config.format`` (JSON schema) is accepted.
    :param supports_thinking: whether extended thinking is accepted.
    :param supports_sampling_params: whether a non-default ``temperature``, ``top_p`` or ``top_k`` is
        accepted (newer models refuse them).
    :param prefill_allowed: whether a final assistant turn (a prefill) is accepted (not from Claude 4.6).
    :param thinking_modes: the ``thinking.type`` values the model takes (``enabled``, ``adaptive``).
    :param effort_levels: the ``output_config.effort`` levels the model offers (empty: no effort).
    :param temperature_top_p_exclusive: whether ``temperature`` and ``top_p`` together are refused.
    :param output_300k_beta: whether the ``output-300k-2026-03-24`` beta lifts ``max_tokens`` to 300,000
        in a batch.
    :param aliases: other ids the API accepts for this model (``claude-haiku-4-5``).
    """

    id: str
    display_name: str
    created_at: str
    family: str
    max_output_tokens: int
    context_window: int
    min_cacheable_tokens: int
    chars_per_token: float
    supports_structured_output: bool = True
    supports_thinking: bool = True
    supports_sampling_params: bool = True
    prefill_allowed: bool = True
    thinking_modes: tuple[str, ...] = ("enabled",)
    effort_levels: tuple[str, ...] = ()
    temperature_top_p_exclusive: bool = True
    output_300k_beta: bool = False
    aliases: tuple[str, ...] = field(default=())

    def estimate_tokens(self, chars: int) -> int:
        """Return the token estimate of ``chars`` characters of text (at least 1 for any text)."""
        if chars <= 0:
            return 0
        return max(1, math.ceil(chars / self.chars_per_token))

    def chars_for_tokens(self, tokens: int) -> int:
        """Return how many characters of text make ``tokens`` tokens (the inverse estimate)."""
        return int(tokens * self.chars_per_token)


@dataclass(frozen=True)
class ModelCatalogue:
    """The known models by id, with their aliases.

    :param models: each model by its id.
    :param sources: where the entries came from, for messages.
    """

    models: Mapping[str, ModelSpec]
    sources: tuple[str, ...] = (SHIPPED_MODELS,)

    def __iter__(self) -> Iterator[ModelSpec]:
        """The models, newest release first (then by id), as ``GET /v1/models`` lists them."""
        return iter(sorted(self.models.values(), key=lambda spec: (spec.created_at, spec.id), reverse=True))

    def __len__(self) -> int:
        return len(self.models)

    def find(self, model: str) -> ModelSpec | None:
        """Return the model with this id or alias (exact, case-sensitive), or ``None``."""
        spec = self.models.get(model)
        if spec is not None:
            return spec
        return self._aliases().get(model)

    def get(self, model: str) -> ModelSpec:
        """Return the model with this id or alias.

        :raises InputError: the model is not in the catalogue; the message says how to add it.
        """
        spec = self.find(model)
        if spec is None:
            known = ", ".join(spec.id for spec in self)
            raise InputError(
                f"unknown model {model!r}{did_you_mean(model, self)} (model ids are case-sensitive; known: "
                f"{known}); fix the id, or "
                f"add the model to a models file shaped like the shipped models.json and name it with "
                f"{MODELS_ENV_VAR}"
            )
        return spec

    def _aliases(self) -> dict[str, ModelSpec]:
        return {alias: spec for spec in self.models.values() for alias in spec.aliases}

    def overlay(self, document: Mapping[str, Any], source: str) -> ModelCatalogue:
        """Return this catalogue with the entries of ``document`` (a models file) on top.

        :param document: a parsed models file: ``{"models": {"<id>": {...fields...}}}``.
        :param source: where ``document`` came from, for messages.
        :raises InputError: an entry is incomplete or has a value of the wrong kind.
        """
        models = dict(self.models)
        entries = document.get("models")
        if not isinstance(entries, Mapping):
            raise InputError(f"the models file {source} needs a 'models' object keyed by model id")
        for model_id, entry in entries.items():
            try:
                models[model_id] = _spec(model_id, entry, models.get(model_id))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(
                    f"the models file {source} has an invalid entry {model_id!r} ({exc}); follow the "
                    "shape of the shipped models.json"
                ) from exc
        catalogue = ModelCatalogue(models=models, sources=(*self.sources, source))
        clashes = sorted(alias for alias in catalogue._aliases() if alias in models)
        if clashes:
            raise InputError(f"the models file {source} makes {clashes} both an id and an alias")
        return catalogue


def _spec(model_id: str, entry: Any, base: ModelSpec | None) -> ModelSpec:
    if not isinstance(entry, Mapping):
        raise TypeError("an entry must be an object")
    fields: dict[str, Any] = (
        {}
        if base is None
        else {name: getattr(base, name) for name in base.__dataclass_fields__ if name != "id"}
    )
    fields.update(entry)
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise KeyError(f"missing {', '.join(missing)}")
    spec = ModelSpec(
        id=model_id,
        display_name=str(fields["display_name"]),
        created_at=str(fields.get("created_at") or UNKNOWN_RELEASE),
        family=str(fields["family"]),
        max_output_tokens=_positive_int(fields["max_output_tokens"], "max_output_tokens"),
        context_window=_positive_int(fields["context_window"], "context_window"),
        min_cacheable_tokens=_positive_int(fields["min_cacheable_tokens"], "min_cacheable_tokens"),
        chars_per_token=float(fields["chars_per_token"]),
        supports_structured_output=bool(fields.get("supports_structured_output", True)),
        supports_thinking=bool(fields.get("supports_thinking", True)),
        supports_sampling_params=bool(fields.get("supports_sampling_params", True)),
        prefill_allowed=bool(fields.get("prefill_allowed", True)),
        thinking_modes=tuple(str(mode) for mode in fields.get("thinking_modes", ("enabled",))),
        effort_levels=tuple(str(level) for level in fields.get("effort_levels") or ()),
        temperature_top_p_exclusive=bool(fields.get("temperature_top_p_exclusive", True)),
        output_300k_beta=bool(fields.get("output_300k_beta", False)),
        aliases=tuple(str(alias) for alias in fields.get("aliases") or ()),
    )
    if not (math.isfinite(spec.chars_per_token) and spec.chars_per_token > 0):
        raise ValueError(f"chars_per_token must be a number above 0, got {spec.chars_per_token!r}")
    return spec


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def load_models(path: str | os.PathLike[str] | None = None) -> ModelCatalogue:
    """Load the shipped catalogue, overlaid with a user's models file when there is one.

    :param path: a models file; when ``None``, the file named by ``CLAUDE_BATCH_MODELS_FILE`` if set.
    :raises InputError: the user's file is missing or not a valid models file.
    """
    override = override_path(path, MODELS_ENV_VAR)
    return _load(None if override is None else str(override))


@functools.lru_cache(maxsize=8)
def _load(override: str | None) -> ModelCatalogue:
    catalogue = ModelCatalogue(models={}, sources=()).overlay(read_shipped("models.json"), SHIPPED_MODELS)
    if override is None:
        return catalogue
    return catalogue.overlay(read_override(override, kind="models", hint=MODELS_ENV_VAR), override)


def did_you_mean(model: str, catalogue: ModelCatalogue | None = None) -> str:
    """Return `` (did you mean 'x'?)`` for the known model id or alias closest to ``model`` (a typo, a
    case slip), or ``""`` when none is close.

    :param model: the id as the user wrote it.
    :param catalogue: the models to look in (default: :func:`load_models`).
    """
    names = [name for spec in (catalogue or load_models()) for name in (spec.id, *spec.aliases)]
    if model in names:
        return ""
    by_folded = {name.lower(): name for name in names}
    close = difflib.get_close_matches(model.strip().lower(), list(by_folded), n=1, cutoff=0.8)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""
