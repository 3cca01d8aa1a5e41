"""The API's request rules, one place, read by the build (before any spend) and by the emulator.

Each rule is a function ``(params, context) -> RuleViolation | None``. A violation carries the API's
own message (what the emulator answers, ``invalid_request_error``), the field it is about, the fix the
build names, and the documentation page the rule comes from. The model-dependent facts (prefill,
thinking modes, effort levels, temperature with top_p, context window, the output-300k beta) are read
from the model catalogue (:mod:`airflow_claude_batch.core.api.model_catalogue`), never written here.

The rules on messages, caching and schemas live in :mod:`~airflow_claude_batch.core.api.message_rules`,
:mod:`~airflow_claude_batch.core.api.cache_rules` and :mod:`~airflow_claude_batch.core.api.schema_rules`;
:func:`first_violation` runs them all, in the order the API reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_claude_batch.core.api.cache_rules import CACHE_RULES
from airflow_claude_batch.core.api.message_rules import MESSAGE_RULES, RuleContext, RuleViolation
from airflow_claude_batch.core.api.model_catalogue import ModelSpec
from airflow_claude_batch.core.api.schema_rules import SCHEMA_RULES

__all__ = ["RuleContext", "RuleViolation", "beta_header_violation", "first_violation", "max_output_tokens"]

DOCS = "https://platform.claude.com/docs/en"
PREFILL_SOURCE = f"{DOCS}/about-claude/models/whats-new-claude-4-6#prefill-removal"
THINKING_SOURCE = f"{DOCS}/build-with-claude/extended-thinking#feature-compatibility"
ADAPTIVE_SOURCE = f"{DOCS}/build-with-claude/adaptive-thinking"
EFFORT_SOURCE = f"{DOCS}/build-with-claude/effort"
SAMPLING_SOURCE = f"{DOCS}/about-claude/models/migrating-to-claude-4#sampling-parameters"
OUTPUT_300K_SOURCE = f"{DOCS}/build-with-claude/batch-processing#extended-output-beta"
BETA_SOURCE = f"{DOCS}/api/beta-headers"
#: The beta that lifts ``max_tokens`` to 300,000 in a batch, on the models whose entry says so.
OUTPUT_300K_BETA = "output-300k-2026-03-24"
OUTPUT_300K_TOKENS = 300_000
_THINKING_ON = ("enabled", "adaptive")


def max_output_tokens(spec: ModelSpec, betas: Sequence[str] = ()) -> int:
    """The largest ``max_tokens`` a batch request may ask of ``spec`` under the ``betas`` it is sent with."""
    if spec.output_300k_beta and OUTPUT_300K_BETA in betas:
        return max(spec.max_output_tokens, OUTPUT_300K_TOKENS)
    return spec.max_output_tokens


def beta_header_violation(header: str | None) -> RuleViolation | None:
    """An ``anthropic-beta`` header that is present but names no beta (empty, or only commas)."""
    if header is None or any(part.strip() for part in header.split(",")):
        return None
    return RuleViolation(
        "empty-beta-header",
        "anthropic-beta: the header is empty; name at least one beta or leave the header out",
        "anthropic-beta",
        "remove the empty anthropic_beta from the connection's extra, or name the betas",
        BETA_SOURCE,
    )


def _thinking_type(params: Mapping[str, Any]) -> str | None:
    thinking = params.get("thinking")
    return thinking.get("type") if isinstance(thinking, Mapping) else None


def _ends_with_assistant(params: Mapping[str, Any]) -> int | None:
    messages = params.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        return len(messages) - 1
    return None


def prefill_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """A final assistant turn: refused on Claude 4.6 and later, and on any model with thinking on."""
    last = _ends_with_assistant(params)
    if last is None:
        return None
    if not context.spec.prefill_allowed:
        return RuleViolation(
            "prefill",
            "This model does not support assistant message prefill. The conversation must end with a "
            "user message.",
            f"messages.{last}",
            f"{context.spec.id} takes no prefill: end with the user turn and ask for the format in the "
            "prompt, or use output_schema (structured outputs)",
            PREFILL_SOURCE,
        )
    if _thinking_type(params) in _THINKING_ON:
        return RuleViolation(
            "prefill-with-thinking",
            "messages: assistant message prefill cannot be used when thinking is enabled",
            f"messages.{last}",
            "drop the final assistant turn, or turn thinking off",
            THINKING_SOURCE,
        )
    return None


def thinking_mode_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """``thinking.type`` must be one the model takes: adaptive only from Opus 4.7, enabled before 4.6."""
    kind = _thinking_type(params)
    if kind not in _THINKING_ON or kind in context.spec.thinking_modes:
        return None
    if kind == "enabled":
        return RuleViolation(
            "thinking-enabled-on-adaptive-only-model",
            'thinking.type.enabled is not supported for this model. Use thinking.type "adaptive" and '
            "output_config.effort to control thinking behavior.",
            "thinking.type",
            f'{context.spec.id} thinks adaptively only: set thinking={{"type": "adaptive"}} (and '
            "output_config.effort) instead of budget_tokens",
            ADAPTIVE_SOURCE,
        )
    return RuleViolation(
        "adaptive-thinking-on-older-model",
        'thinking.type.adaptive is not supported for this model. Use thinking.type "enabled" with '
        "budget_tokens.",
        "thinking.type",
        f'{context.spec.id} predates adaptive thinking: set thinking={{"type": "enabled", '
        '"budget_tokens": N}, or use a Claude 4.6 or later model',
        ADAPTIVE_SOURCE,
    )


def effort_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """``output_config.effort`` only on models with effort, and only at a level the model offers."""
    config = params.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    if effort is None:
        return None
    levels = context.spec.effort_levels
    if not levels:
        return RuleViolation(
            "effort-unsupported",
            f"output_config.effort: the effort parameter is not supported for {context.spec.id}",
            "output_config.effort",
            f"remove output_config.effort; {context.spec.id} has no effort parameter",
            EFFORT_SOURCE,
        )
    if effort not in levels:
        return RuleViolation(
            "effort-level-unsupported",
            f"output_config.effort: '{effort}' is not supported for {context.spec.id}; use one of "
            f"{', '.join(levels)}",
            "output_config.effort",
            f"use one of the levels {context.spec.id} offers: {', '.join(levels)}",
            EFFORT_SOURCE,
        )
    return None


def sampling_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """Thinking refuses temperature and top_k and a top_p below 0.95; some models refuse both samplers."""
    if _thinking_type(params) in _THINKING_ON:
        temperature, top_p = params.get("temperature"), params.get("top_p")
        if temperature is not None and temperature != 1:
            return _sampling(
                "thinking-with-temperature",
                "`temperature` may only be set to 1 when thinking is enabled.",
                "temperature",
                "remove temperature (or turn thinking off)",
            )
        if params.get("top_k") is not None:
            return _sampling(
                "thinking-with-top-k",
                "`top_k` must be unset when thinking is enabled.",
                "top_k",
                "remove top_k (or turn thinking off)",
            )
        if isinstance(top_p, (int, float)) and top_p < 0.95:
            return _sampling(
                "thinking-with-low-top-p",
                "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.",
                "top_p",
                "set top_p between 0.95 and 1, or remove it",
            )
    both = params.get("temperature") is not None and params.get("top_p") is not None
    if both and context.spec.temperature_top_p_exclusive:
        return RuleViolation(
            "temperature-with-top-p",
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
            "top_p",
            f"set temperature or top_p for {context.spec.id}, not both",
            SAMPLING_SOURCE,
        )
    return None


def _sampling(rule: str, message: str, path: str, fix: str) -> RuleViolation:
    return RuleViolation(rule, message, path, fix, THINKING_SOURCE)


def output_300k_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """``max_tokens`` above the model's limit (300,000 with the output-300k beta where it applies)."""
    max_tokens = params.get("max_tokens")
    limit = max_output_tokens(context.spec, context.betas)
    if not isinstance(max_tokens, int) or max_tokens <= limit:
        return None
    hint = (
        f"; in a batch, the {OUTPUT_300K_BETA} beta allows up to {OUTPUT_300K_TOKENS:,}"
        if context.spec.output_300k_beta and OUTPUT_300K_BETA not in context.betas
        else ""
    )
    return RuleViolation(
        "max-tokens",
        f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output tokens for "
        f"{context.spec.id}",
        "max_tokens",
        f"lower max_tokens to {limit:,} or less{hint}",
        OUTPUT_300K_SOURCE,
    )


MODEL_RULES: tuple[Callable[[Mapping[str, Any], RuleContext], RuleViolation | None], ...] = (
    output_300k_rule,
    prefill_rule,
    thinking_mode_rule,
    effort_rule,
    sampling_rule,
)
ALL_RULES = (*MODEL_RULES, *MESSAGE_RULES, *CACHE_RULES, *SCHEMA_RULES)


def first_violation(
    params: Mapping[str, Any],
    spec: ModelSpec,
    *,
    version: str = "2023-06-01",
    betas: Sequence[str] = (),
    input_tokens: int | None = None,
) -> RuleViolation | None:
    """Return the first of the API's rules ``params`` breaks, or ``None``.

    :param params: a request's Messages params, already well-formed (see ``validation.params_problem``).
    :param spec: the model the request names.
    :param version: the ``anthropic-version`` the request is sent under.
    :param betas: the ``anthropic-beta`` values it is sent with.
    :param input_tokens: the prompt's tokens when the caller counted them (the emulator); else estimated.
    """
    context = RuleContext(spec, version, tuple(betas), input_tokens)
    for rule in ALL_RULES:
        violation = rule(params, context)
        if violation is not None:
            return violation
    return None
