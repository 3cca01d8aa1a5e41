"""Deterministic model answers and token estimates, so sample workloads give stable, checkable outputs.

Three kinds of prompt are recognised from the system prompt:

- a classifier (a line ``Labels: a, b, c``) answers ``{"label": ..., "confidence": ...}``;
- a moderator (a line ``Policy version: v``) answers ``{"verdict", "category", "reason",
  "policy_version"}``;
- anything else gets a short text derived from the last user turn.

Tokens are estimated as one per four characters. A request keeps only a compact :class:`RequestDigest`
(its answer and token counts), never its whole params.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

CHARS_PER_TOKEN = 4
TTL_5M = "5m"
TTL_1H = "1h"
TTL_SECONDS = {TTL_5M: 300.0, TTL_1H: 3600.0}

_LABELS_LINE = re.compile(r"^\s*Labels:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_POLICY_LINE = re.compile(r"^\s*Policy version:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[_\-\s]+")

# Words that point at common support-ticket labels beyond the label's own name.
LABEL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "charge", "refund", "payment", "price"),
    "bug": ("error", "crash", "broken", "fails"),
    "feature_request": ("feature", "please add", "would like", "suggest"),
    "account": ("login", "password", "sign in", "account", "locked"),
    "shipping": ("delivery", "package", "tracking"),
    "other": (),
}

# Checked in this order: the more specific categories first ("hurt myself" before "hurt").
MODERATION_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("self_harm", ("suicide", "self-harm", "self harm", "hurt myself", "end my life", "cut myself")),
    ("violence", ("kill", "attack", "bomb", "shoot", "stab", "weapon", "hurt you")),
    ("harassment", ("idiot", "stupid", "moron", "loser", "shut up", "hate you", "worthless")),
    ("spam", ("buy now", "free money", "click here", "limited offer", "discount code", "winner")),
)


@dataclass(frozen=True, slots=True)
class RequestDigest:
    """What the emulator keeps of one request: enough for its answer, usage and errors.

    :param custom_id: the request's id.
    :param model: the model named in the params.
    :param max_tokens: the output cap.
    :param answer: the full answer text, before any ``max_tokens`` cut.
    :param input_tokens: tokens outside the cached prefix (all input tokens when nothing is cached).
    :param cache_key: hash of the cached prefix, or ``None`` when nothing is cacheable.
    :param cache_tokens: tokens of the cached prefix.
    :param cache_ttl: ``"5m"`` or ``"1h"`` for a cacheable prefix, else ``None``.
    :param problem: why the API would reject this request once processing it, or ``None``.
    """

    custom_id: str
    model: str
    max_tokens: int
    answer: str
    input_tokens: int
    cache_key: bytes | None
    cache_tokens: int
    cache_ttl: str | None
    problem: str | None


def estimate_tokens(chars: int) -> int:
    """Return the token estimate for ``chars`` characters (at least 1 for any text)."""
    return -(-chars // CHARS_PER_TOKEN)


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and block.get("type", "text") == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    return ""


def _block_chars(block: Any) -> int:
    if isinstance(block, str):
        return len(block)
    if isinstance(block, dict) and block.get("type", "text") == "text" and isinstance(block.get("text"), str):
        return len(block["text"])
    # Images, tool calls and other blocks count by their JSON size: a stable, rough estimate.
    return len(orjson.dumps(block))


def _content_blocks(content: Any) -> list[Any]:
    if isinstance(content, list):
        return content
    return [content] if content is not None else []


def _prompt_segments(params: dict[str, Any]) -> list[Any]:
    """Return the prompt's blocks in the order the API caches them: tools, system, then messages."""
    segments: list[Any] = []
    tools = params.get("tools")
    if isinstance(tools, list):
        segments.extend(tools)
    segments.extend(_content_blocks(params.get("system")))
    for message in params.get("messages") or []:
        if isinstance(message, dict):
            segments.extend(_content_blocks(message.get("content")))
    return segments


def _cache_control(block: Any) -> dict[str, Any] | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return block["cache_control"]
    return None


def system_text(params: dict[str, Any]) -> str:
    """Return the system prompt's text (a string, or the text blocks joined by newlines)."""
    return "\n".join(_block_text(block) for block in _content_blocks(params.get("system")))


def last_user_text(params: dict[str, Any]) -> str:
    """Return the text of the last user turn ('' when there is none)."""
    for message in reversed(params.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(_block_text(block) for block in _content_blocks(message.get("content")))
    return ""


def count_input_tokens(params: dict[str, Any]) -> int:
    """Return the estimated input tokens of ``params``, as ``count_tokens`` and ``usage`` report them."""
    return sum(estimate_tokens(chars) for chars in _split_chars(params)[:2])


def _split_chars(params: dict[str, Any]) -> tuple[int, int, int]:
    """Return (characters after the last cache breakpoint, characters up to it, breakpoint index)."""
    segments = _prompt_segments(params)
    breakpoint_index = -1
    for index, block in enumerate(segments):
        if _cache_control(block) is not None:
            breakpoint_index = index
    sizes = [_block_chars(block) for block in segments]
    prefix_chars = sum(sizes[: breakpoint_index + 1])
    return sum(sizes) - prefix_chars, prefix_chars, breakpoint_index


def digest_request(custom_id: str, params: dict[str, Any], cache_min_tokens: int) -> RequestDigest:
    """Reduce one valid request to what its answer and usage need.

    :param custom_id: the request's id.
    :param params: the request's Messages params (already checked by ``validation.params_problem``).
    :param cache_min_tokens: smallest prefix, in tokens, that is cached.
    """
    rest_chars, prefix_chars, breakpoint_index = _split_chars(params)
    prefix_tokens = estimate_tokens(prefix_chars)
    cache_key: bytes | None = None
    cache_ttl: str | None = None
    if breakpoint_index >= 0 and prefix_tokens >= cache_min_tokens:
        segments = _prompt_segments(params)
        control = _cache_control(segments[breakpoint_index]) or {}
        cache_ttl = TTL_1H if control.get("ttl") == TTL_1H else TTL_5M
        prefix = orjson.dumps(
            [params["model"], segments[: breakpoint_index + 1]], option=orjson.OPT_SORT_KEYS
        )
        cache_key = hashlib.blake2b(prefix, digest_size=16).digest()
        input_tokens = estimate_tokens(rest_chars)
    else:
        prefix_tokens = 0
        input_tokens = estimate_tokens(rest_chars) + estimate_tokens(prefix_chars)
    return RequestDigest(
        custom_id=custom_id,
        model=params["model"],
        max_tokens=params["max_tokens"],
        answer=answer_text(system_text(params), last_user_text(params)),
        input_tokens=input_tokens,
        cache_key=cache_key,
        cache_tokens=prefix_tokens,
        cache_ttl=cache_ttl,
        problem=request_problem(params),
    )


def request_problem(params: dict[str, Any]) -> str | None:
    """Say why the API would fail this request while processing the batch, or return ``None``."""
    model = params["model"]
    if not model.startswith("claude-"):
        return f"model: {model} is not a known model; use a Claude model name such as claude-sonnet-4-5"
    for index, message in enumerate(params["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: each message needs role 'user' or 'assistant'"
        if "content" not in message:
            return f"messages.{index}.content: Field required"
    return None


def _stable_number(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def answer_text(system: str, user: str) -> str:
    """Return the model's answer for a system prompt and a user turn; the same input always gives it."""
    kind, argument = _prompt_kind(system)
    if kind == "classify":
        return _classify(argument, user)
    if kind == "moderate":
        return moderate(argument, user)
    return summarise(user)


@functools.lru_cache(maxsize=256)
def _prompt_kind(system: str) -> tuple[str, Any]:
    # A batch repeats one system prompt in every request: read it once.
    labels = _LABELS_LINE.search(system)
    if labels:
        names = [name.strip() for name in labels.group(1).split(",") if name.strip()]
        if names:
            return "classify", _label_words(tuple(names))
    policy = _POLICY_LINE.search(system)
    if policy:
        return "moderate", policy.group(1)
    return "summarise", None


def _label_words(labels: tuple[str, ...]) -> tuple[tuple[str, frozenset[str]], ...]:
    """Return each label with the words that point at it: its own parts plus known synonyms."""
    described = []
    for label in labels:
        words = {word for word in _WORD_SPLIT.split(label.lower()) if word}
        words.update(LABEL_SYNONYMS.get(label.lower(), ()))
        described.append((label, frozenset(words)))
    return tuple(described)


def classify(labels: list[str], text: str) -> str:
    """Return ``{"label", "confidence"}`` JSON: the label whose words occur most in ``text``.

    Ties go to the label listed first; text matching no label gets a label from a stable hash.
    """
    return _classify(_label_words(tuple(labels)), text)


def _classify(label_words: tuple[tuple[str, frozenset[str]], ...], text: str) -> str:
    lowered = text.lower()
    number = _stable_number(text)
    best_label, best_score = None, 0
    for label, words in label_words:
        score = sum(1 for word in words if word in lowered)
        if score > best_score:
            best_label, best_score = label, score
    if best_label is None:
        best_label = label_words[number % len(label_words)][0]
        confidence = 0.50 + (number % 25) / 100
    else:
        confidence = 0.75 + (number % 25) / 100
    return orjson.dumps({"label": best_label, "confidence": round(confidence, 2)}).decode()


def moderate(policy_version: str, text: str) -> str:
    """Return the moderation verdict JSON for ``text`` under ``policy_version``."""
    lowered = text.lower()
    for category, keywords in MODERATION_KEYWORDS:
        for keyword in keywords:
            if keyword in lowered:
                verdict = {
                    "verdict": "flag",
                    "category": category,
                    "reason": f"contains '{keyword}'",
                    "policy_version": policy_version,
                }
                return orjson.dumps(verdict).decode()
    verdict = {
        "verdict": "allow",
        "category": "none",
        "reason": "no policy terms found",
        "policy_version": policy_version,
    }
    return orjson.dumps(verdict).decode()


def summarise(text: str) -> str:
    """Return a short text derived from ``text``: its first words and a stable reference."""
    words = text.split()
    head = " ".join(words[:12])
    if len(words) > 12:
        head += " ..."
    return f"Answer to: {head or '(empty prompt)'} [ref {_stable_number(text) % 16**8:08x}]"


def cut_to_max_tokens(answer: str, max_tokens: int) -> tuple[str, int, str]:
    """Return ``(text, output_tokens, stop_reason)`` for ``answer`` under the ``max_tokens`` cap."""
    output_tokens = max(1, estimate_tokens(len(answer)))
    if output_tokens <= max_tokens:
        return answer, output_tokens, "end_turn"
    return answer[: max_tokens * CHARS_PER_TOKEN], max_tokens, "max_tokens"


def usage(digest: RequestDigest, cache_event: str | None, output_tokens: int) -> dict[str, Any]:
    """Return the ``usage`` object of a succeeded request.

    :param digest: the request.
    :param cache_event: ``"write"``, ``"read"`` or ``None`` (nothing cacheable).
    :param output_tokens: tokens of the answer as returned.
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
        "output_tokens": output_tokens,
        "service_tier": "batch",
    }
