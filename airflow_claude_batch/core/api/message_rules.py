"""The API's rules on a request's turns: text, tool calls and their results, citations, context window.

Part of the one rule set (see :mod:`airflow_claude_batch.core.api.request_rules`, which runs them all);
this module also holds the two records every rule shares, :class:`RuleViolation` and
:class:`RuleContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.model_catalogue import ModelSpec

DOCS = "https://platform.claude.com/docs/en"
MESSAGES_SOURCE = f"{DOCS}/api/messages"
TOOL_USE_SOURCE = (
    f"{DOCS}/agents-and-tools/tool-use/implement-tool-use#handling-tool-use-and-tool-result-content-blocks"
)
CONTEXT_SOURCE = f"{DOCS}/build-with-claude/context-windows"
CITATIONS_SOURCE = f"{DOCS}/build-with-claude/citations"
#: The ``anthropic-version`` from which citations on a user text block and a document in an assistant
#: turn are refused (the docs say nothing of it; the emulator and the build are strict).
CITATIONS_STRICT_VERSION = "2026-10-21"


@dataclass(frozen=True)
class RuleViolation:
    """One broken rule of the API.

    :param rule: the rule's short name (``prefill``, ``cache-ttl-order``...).
    :param message: the API's message for it (what the emulator answers).
    :param path: the field it is about (``messages.2.content.0``).
    :param fix: what to change, for the build's error.
    :param source: the documentation page the rule comes from.
    """

    rule: str
    message: str
    path: str
    fix: str
    source: str

    def describe(self) -> str:
        """The build's message: the rule, the field, what the API would say, the fix and the page."""
        return (
            f"the API refuses this request (rule {self.rule!r}, at params.{self.path}): {self.message} "
            f"Fix: {self.fix} (see {self.source})"
        )


@dataclass(frozen=True)
class RuleContext:
    """What a rule needs besides the params: the model, the headers, the counted prompt tokens.

    :param spec: the model the request names.
    :param version: its ``anthropic-version``.
    :param betas: its ``anthropic-beta`` values.
    :param input_tokens: the prompt's tokens when counted by the caller, else ``None`` (estimated).
    """

    spec: ModelSpec
    version: str = "2023-06-01"
    betas: tuple[str, ...] = ()
    input_tokens: int | None = None


def _blocks(params: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Each content block of ``system`` and ``messages`` as ``(path, role, block)``."""
    system = params.get("system")
    if isinstance(system, list):
        for index, block in enumerate(system):
            if isinstance(block, Mapping):
                yield f"system.{index}", "system", block
    messages = params.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
            continue
        for position, block in enumerate(message["content"]):
            if isinstance(block, Mapping):
                yield f"messages.{index}.content.{position}", str(message.get("role")), block


def whitespace_text_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """A text block (or string content) made only of whitespace."""
    candidates: list[tuple[str, Any]] = []
    if isinstance(params.get("system"), str) and params["system"]:
        candidates.append(("system", params["system"]))
    messages = params.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(message, Mapping) and isinstance(message.get("content"), str):
            candidates.append((f"messages.{index}.content", message["content"]))
    candidates.extend(
        (path, block.get("text")) for path, _, block in _blocks(params) if block.get("type") == "text"
    )
    for path, text in candidates:
        if isinstance(text, str) and text and text.isspace():
            return RuleViolation(
                "whitespace-only-text",
                "messages: text content blocks must contain non-whitespace text",
                path,
                "give the block some text, or leave the block (or the record) out",
                MESSAGES_SOURCE,
            )
    return None


def _ids(content: Any, block_type: str, key: str) -> list[tuple[int, str]]:
    if not isinstance(content, list):
        return []
    return [
        (position, block.get(key))
        for position, block in enumerate(content)
        if isinstance(block, Mapping) and block.get("type") == block_type
    ]


def tool_pairing_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """Every ``tool_use`` answered by a ``tool_result`` in the next turn, and no result for an unknown id."""
    messages = params.get("messages")
    if not isinstance(messages, list):
        return None
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        for position, tool_use_id in _ids(content, "tool_result", "tool_use_id"):
            if tool_use_id not in previous_uses:
                return RuleViolation(
                    "tool-result-unknown-id",
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {tool_use_id}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message.",
                    f"messages.{index}.content.{position}",
                    "answer only the tool_use ids of the assistant turn just before",
                    TOOL_USE_SOURCE,
                )
        uses = [tool_id for _, tool_id in _ids(content, "tool_use", "id")]
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = {
            tool_id
            for _, tool_id in _ids(
                following.get("content") if isinstance(following, Mapping) else None,
                "tool_result",
                "tool_use_id",
            )
        }
        missing = [tool_id for tool_id in uses if tool_id not in answered]
        if missing:
            return RuleViolation(
                "tool-use-without-result",
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(map(str, missing))}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message.",
                f"messages.{index}",
                "follow the assistant turn with a user turn holding a tool_result for each tool_use id",
                TOOL_USE_SOURCE,
            )
        previous_uses = set(uses)
    return None


def citations_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """From ``anthropic-version`` 2026-10-21: no citations on a user text block, no document from the
    assistant (the docs are silent on the version; strict, see docs/architecture.md)."""
    if context.version < CITATIONS_STRICT_VERSION:
        return None
    for path, role, block in _blocks(params):
        kind = block.get("type")
        if role == "user" and kind == "text" and block.get("citations"):
            return RuleViolation(
                "citations-on-user-text",
                f"{path}.citations: citations are only accepted on assistant text blocks",
                f"{path}.citations",
                "remove citations from the user's text blocks (they belong to answers)",
                CITATIONS_SOURCE,
            )
        if role == "assistant" and kind == "document":
            return RuleViolation(
                "document-in-assistant-turn",
                f"{path}: document blocks are only accepted in user turns",
                path,
                "move the document into a user turn",
                CITATIONS_SOURCE,
            )
    return None


def prompt_chars(params: Mapping[str, Any]) -> int:
    """Characters of the prompt's text (system, messages, tools): what the token estimate counts."""
    total = 0
    stack: list[Any] = [params.get("system"), params.get("messages"), params.get("tools")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(value for key, value in item.items() if key not in ("type", "cache_control"))
        elif isinstance(item, list):
            stack.extend(item)
    return total


def context_window_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """A prompt longer than the model's context window.

    The build counts only the prompt's text at the catalogue's characters per token (JSON punctuation
    and per-message overhead left out, so the estimate errs low: a refusal is certain, a pass is not).
    """
    tokens = context.input_tokens
    if tokens is None:
        tokens = context.spec.estimate_tokens(prompt_chars(params))
    limit = context.spec.context_window
    if tokens <= limit:
        return None
    return RuleViolation(
        "context-window",
        f"prompt is too long: {tokens} tokens > {limit} maximum",
        "messages",
        f"shorten the prompt below {context.spec.id}'s {limit:,}-token context window (split the "
        "record, or trim the text)",
        CONTEXT_SOURCE,
    )


MESSAGE_RULES: tuple[Callable[[Mapping[str, Any], RuleContext], RuleViolation | None], ...] = (
    whitespace_text_rule,
    tool_pairing_rule,
    citations_rule,
    context_window_rule,
)
