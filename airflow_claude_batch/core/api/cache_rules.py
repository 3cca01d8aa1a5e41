"""The API's prompt-caching rules: at most 4 breakpoints, and no 1-hour breakpoint after a 5-minute one.

Part of the one rule set (see :mod:`airflow_claude_batch.core.api.request_rules`). Breakpoints are read in
the order the prompt is cached (tools, then system, then messages); the top-level ``cache_control``
(automatic caching) is one more breakpoint, at the end of the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_claude_batch.core.api.message_rules import RuleContext, RuleViolation

CACHING_SOURCE = "https://platform.claude.com/docs/en/build-with-claude/prompt-caching"
MAX_CACHE_BREAKPOINTS = 4


def _controls(params: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Each breakpoint as ``(path, cache_control)``, in the prompt's order, the automatic one last."""
    found: list[tuple[str, Mapping[str, Any]]] = []

    def visit(value: Any, path: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, f"{path}.{index}")
        elif isinstance(value, Mapping):
            control = value.get("cache_control")
            if isinstance(control, Mapping):
                found.append((f"{path}.cache_control", control))
            if isinstance(value.get("content"), list):
                visit(value["content"], f"{path}.content")

    for key in ("tools", "system", "messages"):
        visit(params.get(key), key)
    top = params.get("cache_control")
    if isinstance(top, Mapping):
        found.append(("cache_control", top))
    return found


def breakpoint_count_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """More than 4 breakpoints, the top-level automatic one counted."""
    controls = _controls(params)
    if len(controls) <= MAX_CACHE_BREAKPOINTS:
        return None
    return RuleViolation(
        "cache-breakpoints",
        f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found "
        f"{len(controls)}.",
        controls[MAX_CACHE_BREAKPOINTS][0],
        f"keep at most {MAX_CACHE_BREAKPOINTS} cache_control marks (a top-level cache_control counts as "
        "one); the last mark caches everything before it",
        CACHING_SOURCE,
    )


def ttl_order_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """A 1-hour breakpoint after a 5-minute one (longer lifetimes must come first)."""
    seen_short = False
    for path, control in _controls(params):
        ttl = control.get("ttl", "5m")
        if ttl == "5m":
            seen_short = True
        elif ttl == "1h" and seen_short:
            return RuleViolation(
                "cache-ttl-order",
                "cache_control: a ttl='1h' cache_control block must not come after a ttl='5m' "
                "cache_control block; blocks with a longer ttl must come first",
                path,
                "mark the earlier blocks (tools, system) with the 1-hour ttl and the later ones with 5 "
                "minutes, or use one ttl throughout",
                f"{CACHING_SOURCE}#mixing-different-ttls",
            )
    return None


CACHE_RULES: tuple[Callable[[Mapping[str, Any], RuleContext], RuleViolation | None], ...] = (
    breakpoint_count_rule,
    ttl_order_rule,
)
