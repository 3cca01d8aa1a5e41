"""The prompt cache as the estimate sees it: which part of a request can be cached, whether its model
caches a prefix that long, and whether its lifetime pays off at a hit rate.

A request's cacheable prefix is everything up to its last ``cache_control`` breakpoint, in the order
the API caches a prompt: ``tools``, then ``system``, then the messages' content blocks. A
``cache_control`` at the top level of the params (automatic caching) makes the whole prompt the prefix.
The prefix is measured in bytes of its JSON here; the estimate turns bytes into tokens.

A prefix shorter than the model's minimum cacheable length (``min_cacheable_tokens`` in the model
catalogue, ``models.json``) is not cached at all: it is billed as plain input.

Break-even. A cached prefix costs ``(1 - h) * w + h * r`` input prices per request at hit rate ``h``,
against 1 uncached (``w``: the write multiplier, ``r``: the read multiplier), so caching pays off when
``h > (w - 1) / (w - r)``: above about 53 % for 1-hour writes (2x, reads 0.1x) and 22 % for 5-minute
writes (1.25x).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from airflow_claude_batch.core.api.model_catalogue import load_models

TTL_5M = "5m"
TTL_1H = "1h"
#: The hit rate the expected cost assumes without history: the middle of the 30 % to 98 % that the
#: batch-processing docs report for prompt caching in batches (hits are best effort there). The upper
#: bound assumes no hit at all.
DEFAULT_HIT_RATE = 0.64
#: The minimum assumed for a model the catalogue does not know (the smallest minimum of current models
#: is 512 and most Sonnet models cache from 1,024).
FALLBACK_MIN_CACHEABLE_TOKENS = 1024


class CachePrefix(NamedTuple):
    """A request's cacheable prefix.

    :param size: bytes of the prefix's JSON (0: nothing is marked for caching).
    :param ttl: ``"5m"`` or ``"1h"``.
    """

    size: int = 0
    ttl: str | None = None


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, list):
        return content
    return [content] if content is not None else []


def _segments(params: Mapping[str, Any]) -> list[Any]:
    segments: list[Any] = []
    tools = params.get("tools")
    if isinstance(tools, list):
        segments.extend(tools)
    segments.extend(_blocks(params.get("system")))
    for message in params.get("messages") or ():
        if isinstance(message, Mapping):
            segments.extend(_blocks(message.get("content")))
    return segments


def _control(block: Any) -> Mapping[str, Any] | None:
    if isinstance(block, Mapping) and isinstance(block.get("cache_control"), Mapping):
        return block["cache_control"]
    return None


def _ttl(control: Mapping[str, Any]) -> str:
    return TTL_1H if control.get("ttl") == TTL_1H else TTL_5M


def _size(block: Any) -> int:
    if isinstance(block, str):
        return len(block.encode("utf-8"))
    return len(orjson.dumps(block))


def cached_prefix(params: Mapping[str, Any]) -> CachePrefix:
    """Return the cacheable prefix of a request's params (tools, system and messages, in that order).

    :param params: Messages params.
    """
    segments = _segments(params)
    top = params.get("cache_control")
    if isinstance(top, Mapping):
        return CachePrefix(sum(_size(block) for block in segments), _ttl(top))
    last = -1
    for index, block in enumerate(segments):
        if _control(block) is not None:
            last = index
    if last < 0:
        return CachePrefix()
    control = _control(segments[last]) or {}
    return CachePrefix(sum(_size(block) for block in segments[: last + 1]), _ttl(control))


def min_cacheable_tokens(model: str) -> tuple[int, bool]:
    """The shortest prefix ``model`` caches, and whether the model catalogue knows the model.

    :param model: a model id or alias.
    """
    spec = load_models().find(model)
    if spec is None:
        return FALLBACK_MIN_CACHEABLE_TOKENS, False
    return spec.min_cacheable_tokens, True


def chars_per_token(model: str | None, default: float = 4.0) -> float:
    """Characters per token of ``model`` for local estimates (``default`` when unknown)."""
    spec = load_models().find(model) if model else None
    return spec.chars_per_token if spec is not None else default


def break_even_hit_rate(write: float, read: float) -> float:
    """The hit rate above which caching a prefix costs less than not caching it.

    :param write: the write multiplier (1.25 for 5 minutes, 2.0 for 1 hour).
    :param read: the read multiplier (0.1).
    """
    if write <= 1.0:
        return 0.0
    return (write - 1.0) / (write - read)
