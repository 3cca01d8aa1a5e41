"""Validation of one batch request, shared by the builder (before any spend) and the emulator.

Each check returns a message that says what is wrong and how to fix it, or ``None`` when valid; callers
add where the request came from.
"""

from __future__ import annotations

import math
from typing import Any

from airflow_claude_batch.core.api.limits import CUSTOM_ID_PATTERN, MAX_CUSTOM_ID_LENGTH


def custom_id_problem(custom_id: Any) -> str | None:
    """Say why ``custom_id`` breaks the API's rule ``^[a-zA-Z0-9_-]{1,64}$``, or return ``None``."""
    if not isinstance(custom_id, str):
        return f"custom_id must be a string, got {type(custom_id).__name__}; map the id field to text"
    if not custom_id:
        return "custom_id is empty; every record needs an id"
    if len(custom_id) > MAX_CUSTOM_ID_LENGTH:
        return (
            f"custom_id {custom_id[:20]!r}... is {len(custom_id)} characters, the API allows at most "
            f"{MAX_CUSTOM_ID_LENGTH}; shorten the ids (for example a hash of the long id)"
        )
    if custom_id.endswith(("\n", "\r")) and CUSTOM_ID_PATTERN.fullmatch(custom_id.rstrip("\r\n")):
        return f"custom_id {custom_id!r} ends with a line break; remove it from the source"
    # fullmatch: with match, the rule's "$" would let one trailing line break through; the API does not
    if not CUSTOM_ID_PATTERN.fullmatch(custom_id):
        return (
            f"custom_id {custom_id!r} has characters outside letters, digits, '_' and '-'; "
            "clean the ids in the source (they are kept exactly, never rewritten)"
        )
    return None


def params_problem(params: Any) -> str | None:
    """Say why ``params`` cannot be a batch request's Messages params, or return ``None``.

    Checks what the API rejects at create time (``stream``, ``max_tokens``) and what every request
    needs (``model``, ``messages``); the rest is validated by the API per request, asynchronously.
    """
    if not isinstance(params, dict):
        return f"params must be an object, got {type(params).__name__}"
    if params.get("stream"):
        return "params.stream is true; batches are never streamed, remove 'stream'"
    for field in ("model", "max_tokens", "messages"):
        if field not in params:
            return f"params.{field} is missing; set it on the operator or in the render callable"
    max_tokens = params["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return f"params.max_tokens must be a whole number >= 1, got {max_tokens!r}"
    if not isinstance(params["model"], str) or not params["model"]:
        return f"params.model must be a model name, got {params['model']!r}"
    messages = params["messages"]
    if not isinstance(messages, list) or not messages:
        return "params.messages must be a non-empty list of {role, content} turns"
    return _non_finite_number_problem(params)


def _non_finite_number_problem(value: Any) -> str | None:
    # NaN and infinity are not JSON: the API would reject the body, so catch them here.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"params contain the number {item!r}, which is not valid JSON; use a finite number"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
