"""What the emulator keeps of one request, its token counts, and the ``usage`` of its answer.

Tokens are estimated from characters with the model's ratio from the catalogue
(:attr:`ModelSpec.chars_per_token`): text blocks by their text, other blocks (images, tool calls, tool
definitions) by their JSON size. ``count_tokens`` and ``usage`` use the same estimate, so the input
tokens reported for a request equal what ``count_tokens`` said for it.

The cacheable prefix is everything up to the last block with ``cache_control`` (tools, then system,
then messages), or up to the last block when the request sets ``cache_control`` at the top level
(automatic caching); it is cached only when it reaches the model's minimum cacheable length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.api.model_catalogue import ModelSpec
from airflow_claude_batch.emulator.answers.deterministic import content_blocks
from airflow_claude_batch.emulator.answers.replies import Reply, build_reply
from airflow_claude_batch.emulator.checks.request_checks import Problem

TTL_5M = "5m"
TTL_1H = "1h"
TTL_SECONDS = {TTL_5M: 300.0, TTL_1H: 3600.0}


@dataclass(frozen=True, slots=True)
class RequestDigest:
    """What the emulator keeps of one request: enough for its answer, usage and errors.

    :param custom_id: the request's id.
    :param model: the model as the request names it.
    :param reply: the answer (``None`` for a request the API refuses).
    :param input_tokens: tokens outside the cached prefix (all input tokens when nothing is cached).
    :param cache_key: hash of the cached prefix, or ``None`` when nothing is cacheable.
    :param cache_tokens: tokens of the cached prefix.
    :param cache_ttl: ``"5m"`` or ``"1h"`` for a cacheable prefix, else ``None``.
    :param problem: why the API refuses this request, or ``None``.
    """

    custom_id: str
    model: str
    reply: Reply | None
    input_tokens: int
    cache_key: bytes | None
    cache_tokens: int
    cache_ttl: str | None
    problem: Problem | None


def refused(custom_id: str, model: Any, problem: Problem) -> RequestDigest:
    """Return the digest of a request the API refuses."""
    return RequestDigest(custom_id, str(model), None, 0, None, 0, None, problem)


def _block_chars(block: Any) -> int:
    if isinstance(block, str):
        return len(block)
    if isinstance(block, dict) and block.get("type", "text") == "text" and isinstance(block.get("text"), str):
        return len(block["text"])
    return len(orjson.dumps(block))


def prompt_segments(params: Mapping[str, Any]) -> list[Any]:
    """Return the prompt's blocks in the order the API caches them: tools, system, then messages."""
    segments: list[Any] = []
    tools = params.get("tools")
    if isinstance(tools, list):
        segments.extend(tools)
    segments.extend(content_blocks(params.get("system")))
    for message in params.get("messages") or []:
        if isinstance(message, dict):
            segments.extend(content_blocks(message.get("content")))
    return segments


def _cache_control(block: Any) -> Mapping[str, Any] | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return block["cache_control"]
    return None


def _breakpoint(params: Mapping[str, Any], segments: list[Any]) -> tuple[int, Mapping[str, Any] | None]:
    """Return the index of the last block of the cacheable prefix (-1 for none) and its cache_control."""
    index, control = -1, None
    for position, block in enumerate(segments):
        found = _cache_control(block)
        if found is not None:
            index, control = position, found
    automatic = params.get("cache_control")
    if isinstance(automatic, dict) and segments:
        index, control = len(segments) - 1, automatic
    return index, control


def count_input_tokens(params: Mapping[str, Any], spec: ModelSpec) -> int:
    """Return the input tokens of ``params`` for ``spec``, as ``count_tokens`` and ``usage`` report them."""
    segments = prompt_segments(params)
    index, _ = _breakpoint(params, segments)
    sizes = [_block_chars(block) for block in segments]
    prefix = sum(sizes[: index + 1])
    return spec.estimate_tokens(prefix) + spec.estimate_tokens(sum(sizes) - prefix)


def digest_request(custom_id: str, params: Mapping[str, Any], spec: ModelSpec) -> RequestDigest:
    """Reduce one valid request to what its answer and usage need.

    :param custom_id: the request's id.
    :param params: the request's Messages params (already checked by ``request_checks``).
    :param spec: the model the request names.
    """
    segments = prompt_segments(params)
    index, control = _breakpoint(params, segments)
    sizes = [_block_chars(block) for block in segments]
    prefix_chars = sum(sizes[: index + 1])
    prefix_tokens = spec.estimate_tokens(prefix_chars)
    rest_tokens = spec.estimate_tokens(sum(sizes) - prefix_chars)
    cache_key: bytes | None = None
    cache_ttl: str | None = None
    if index >= 0 and prefix_tokens >= spec.min_cacheable_tokens:
        cache_ttl = TTL_1H if (control or {}).get("ttl") == TTL_1H else TTL_5M
        prefix = orjson.dumps([spec.id, segments[: index + 1]], option=orjson.OPT_SORT_KEYS)
        cache_key = hashlib.blake2b(prefix, digest_size=16).digest()
        input_tokens = rest_tokens
    else:
        input_tokens, prefix_tokens = rest_tokens + prefix_tokens, 0
    return RequestDigest(
        custom_id=custom_id,
        model=params["model"],
        reply=build_reply(params, spec),
        input_tokens=input_tokens,
        cache_key=cache_key,
        cache_tokens=prefix_tokens,
        cache_ttl=cache_ttl,
        problem=None,
    )


def usage(digest: RequestDigest, cache_event: str | None, service_tier: str = "batch") -> dict[str, Any]:
    """Return the ``usage`` object of an answered request.

    :param digest: the request (with a reply).
    :param cache_event: ``"write"``, ``"read"`` or ``None`` (nothing cacheable).
    :param service_tier: ``"batch"`` for batch results, ``"standard"`` for ``POST /v1/messages``.
    """
    written = digest.cache_tokens if cache_event == "write" else 0
    read = digest.cache_tokens if cache_event == "read" else 0
    return {
        "input_tokens": digest.input_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written if digest.cache_ttl == TTL_5M else 0,
            "ephemeral_1h_input_tokens": written if digest.cache_ttl == TTL_1H else 0,
        },
        "output_tokens": digest.reply.output_tokens if digest.reply else 0,
        "service_tier": service_tier,
    }


def message(
    message_id: str, digest: RequestDigest, cache_event: str | None, service_tier: str
) -> dict[str, Any]:
    """Return the Message object of an answered request."""
    reply = digest.reply
    if reply is None:
        raise ValueError(f"request {digest.custom_id} was refused; it has no answer")
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": digest.model,
        "content": orjson.Fragment(reply.content),
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": reply.stop_details,
        "usage": usage(digest, cache_event, service_tier),
    }
