"""The model a run names, checked against the API's models endpoint before anything is spent.

The endpoint's answer decides: a model it does not list (names are matched exactly, as the API matches
them: ``Claude-Sonnet-4-6`` is not ``claude-sonnet-4-6``) fails the build, and so does a ``max_tokens``
above the output limit the endpoint gives. No answer (unreachable, no models endpoint behind a gateway,
an error) is a warning, never a failure: the check is there to save a batch, not to stop one.
Answers are kept per model for the life of the process, so a run asks once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from airflow_claude_batch.core.api.model_catalogue import did_you_mean, load_models
from airflow_claude_batch.core.api.request_rules import OUTPUT_300K_BETA, max_output_tokens
from airflow_claude_batch.exceptions import InputError

log = logging.getLogger(__name__)

#: ``model -> the endpoint's entry, or None when it has no such model``; raises when it gives no answer.
ModelLookup = Callable[[str], "Mapping[str, Any] | None"]

_answers: dict[tuple[str, str], Mapping[str, Any] | None] = {}


def check_model(
    model: str,
    max_tokens: int,
    lookup: ModelLookup,
    *,
    endpoint: str = "",
    betas: tuple[str, ...] = (),
) -> bool:
    """Check that ``model`` exists exactly as written and that ``max_tokens`` fits its output limit.

    :param model: the model every request names.
    :param max_tokens: the requests' ``max_tokens``.
    :param lookup: asks the models endpoint (see ``ClaudeBatchHook.get_model_info``).
    :param endpoint: the API's base URL, so that answers of different endpoints are kept apart.
    :param betas: the connection's betas: with the output-300k beta, a model whose catalogue entry allows
        it takes up to 300,000 (the endpoint reports the limit without the beta).
    :return: ``True`` when the endpoint answered, ``False`` when the check was skipped with a warning.
    :raises InputError: the endpoint has no such model, or ``max_tokens`` is over its limit.
    """
    key = (endpoint, model)
    if key not in _answers:
        try:
            _answers[key] = lookup(model)
        except Exception as exc:  # no answer: a warning, never a failure
            log.warning(
                "could not check model %r with the models endpoint (%s: %s); going on unchecked. Set "
                "check_model=False for a gateway without a models endpoint",
                model,
                type(exc).__name__,
                exc,
            )
            return False
    info = _answers[key]
    if info is None:
        raise InputError(f"model {model!r} does not exist at the API{_suggestion(model)}; fix model=")
    limit = info.get("max_tokens")
    spec = load_models().find(model)
    if isinstance(limit, int) and spec is not None and OUTPUT_300K_BETA in betas:
        limit = max(limit, max_output_tokens(spec, betas))
    if isinstance(limit, int) and max_tokens > limit:
        raise InputError(
            f"max_tokens={max_tokens} is over the output limit of {model} ({limit}); lower max_tokens"
        )
    return True


def _suggestion(model: str) -> str:
    return did_you_mean(model) or " (names are case-sensitive and matched exactly)"
