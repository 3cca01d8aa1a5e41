"""Deterministic model answers and token estimates, so sample workloads give stable, checkable outputs.

Three kinds of prompt are recognised from the system prompt:

- a classifier (a line ``Labels: a, b, c``) answers ``{"label": ..., "confidence": ...}``; a model of
  the ``haiku`` line slips on one answer in eight (by a stable hash of the model and the text: the label
  listed after the right one), so that an eval sweep sees the models differ, deterministically;
- a moderator (a line ``Policy version: v``) answers ``{"verdict", "category", "reason",
  "policy_version"}``;
- anything else gets a short text derived from the last user turn and the model.

How that text becomes content blocks (tool calls, thinking, structured output) is :mod:`.replies`'s;
token counts and the cache are :mod:`.digests`'s.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import orjson

_LABELS_LINE = re.compile(r"^\s*Labels:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_POLICY_LINE = re.compile(r"^\s*Policy version:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[_\-\s]+")
#: A ``haiku`` model gives the next label on one classification in this many.
HAIKU_SLIP_EVERY = 8

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


def block_text(block: Any) -> str:
    """Return a text block's text (a plain string is its own text); other blocks give ''."""
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and block.get("type", "text") == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    return ""


def content_blocks(content: Any) -> list[Any]:
    """Return a message or system content as a list of blocks (a string stays one item)."""
    if isinstance(content, list):
        return content
    return [content] if content is not None else []


def system_text(params: dict[str, Any]) -> str:
    """Return the system prompt's text (a string, or the text blocks joined by newlines)."""
    return "\n".join(block_text(block) for block in content_blocks(params.get("system")))


def last_user_text(params: dict[str, Any]) -> str:
    """Return the text of the last user turn ('' when there is none)."""
    for message in reversed(params.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(block_text(block) for block in content_blocks(message.get("content")))
    return ""


def _stable_number(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def answer_text(system: str, user: str, model: str = "") -> str:
    """Return the model's answer for a system prompt and a user turn; the same input always gives it.

    :param system: the system prompt's text.
    :param user: the last user turn's text.
    :param model: the model id; free-text answers differ by model (the sample workloads' JSON does not).
    """
    kind, argument = _prompt_kind(system)
    if kind == "classify":
        return _classify(argument, user, model)
    if kind == "moderate":
        return moderate(argument, user)
    return summarise(user, model)


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


def _classify(label_words: tuple[tuple[str, frozenset[str]], ...], text: str, model: str = "") -> str:
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
    if "haiku" in model and _stable_number(model + text) % HAIKU_SLIP_EVERY == 0:
        names = [label for label, _ in label_words]
        best_label = names[(names.index(best_label) + 1) % len(names)]
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


def summarise(text: str, model: str = "") -> str:
    """Return a short text derived from ``text``: its first words and a reference stable per model."""
    words = text.split()
    head = " ".join(words[:12])
    if len(words) > 12:
        head += " ..."
    return f"Answer to: {head or '(empty prompt)'} [ref {_stable_number(model + text) % 16**8:08x}]"
