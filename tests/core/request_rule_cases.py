"""One request the API refuses per rule, with the same request fixed: shared by the rule's own test,
the emulator's (the real SDK over HTTP) and the build's, so the three users see one rule set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
from pydantic import BaseModel, Field

NEW_VERSION = "2026-10-21"
OLD_VERSION = "2023-06-01"
USER = {"role": "user", "content": "Classify this ticket: I was charged twice"}
PREFILL = {"role": "assistant", "content": "{"}
THINKING = {"type": "enabled", "budget_tokens": 1024}
RAW_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["score"],
    "additionalProperties": False,
}
OPEN_SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


class Review(BaseModel):
    """A schema with constraints the API's subset leaves out (ge/le, max_length, min_length=3)."""

    score: int = Field(ge=1, le=5)
    summary: str = Field(max_length=80)
    tags: list[str] = Field(min_length=3)


class Node(BaseModel):
    """A recursive schema: the API does not take one."""

    name: str
    children: list[Node]


class Tree(BaseModel):
    root: Node


class Flat(BaseModel):
    root: str


def _tool_use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "lookup", "input": {"q": "x"}}


def _tool_result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "42"}


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"format": {"type": "json_schema", "schema": schema}}


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _cached(text: str, ttl: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": ttl}}


CITATION = {
    "type": "char_location",
    "cited_text": "the sky is blue",
    "document_index": 0,
    "document_title": "notes",
    "start_char_index": 0,
    "end_char_index": 15,
}
DOCUMENT = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "the sky is blue"},
}
CITED_TEXT = {"type": "text", "text": "hi", "citations": [CITATION]}
DOCUMENT_FROM_ASSISTANT = [
    USER,
    {"role": "assistant", "content": [DOCUMENT]},
    {"role": "user", "content": "ok"},
]
LOOKUP_TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


@dataclass(frozen=True)
class RuleCase:
    """A request breaking ``rule`` (``bad``) and the same request fixed (``good``).

    :param rule: the rule's name in ``core/api/request_rules.py`` and its companions.
    :param bad: the params the API refuses.
    :param good: the params it takes.
    :param version: the ``anthropic-version`` both are sent under.
    :param betas: the ``anthropic-beta`` values they are sent with.
    :param good_version: a different version for ``good`` (a rule that depends on the version).
    """

    rule: str
    bad: dict[str, Any]
    good: dict[str, Any]
    version: str = OLD_VERSION
    betas: tuple[str, ...] = ()
    good_betas: tuple[str, ...] | None = None
    good_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def params(model: str = "claude-haiku-4-5", **changes: Any) -> dict[str, Any]:
    """Messages params with a user turn; ``changes`` override (``messages`` included)."""
    return {"model": model, "max_tokens": 512, "messages": [USER], **changes}


def _long_prompt(tokens: int, chars_per_token: float = 4.0) -> str:
    return "word " * int(tokens * chars_per_token / 5 + 10)


CASES: dict[str, RuleCase] = {
    "prefill": RuleCase(
        "prefill",
        params("claude-sonnet-4-6", messages=[USER, PREFILL]),
        params("claude-haiku-4-5", messages=[USER, PREFILL]),
    ),
    "prefill-with-thinking": RuleCase(
        "prefill-with-thinking",
        params(max_tokens=2048, thinking=THINKING, messages=[USER, PREFILL]),
        params(max_tokens=2048, thinking=THINKING),
    ),
    "thinking-enabled-on-adaptive-only-model": RuleCase(
        "thinking-enabled-on-adaptive-only-model",
        params("claude-opus-4-7", max_tokens=2048, thinking=THINKING),
        params("claude-opus-4-7", max_tokens=2048, thinking={"type": "adaptive"}),
    ),
    "adaptive-thinking-on-older-model": RuleCase(
        "adaptive-thinking-on-older-model",
        params("claude-sonnet-4-5", max_tokens=2048, thinking={"type": "adaptive"}),
        params("claude-sonnet-4-5", max_tokens=2048, thinking=THINKING),
    ),
    "effort-unsupported": RuleCase(
        "effort-unsupported",
        params("claude-haiku-4-5", output_config={"effort": "low"}),
        params("claude-opus-4-5", output_config={"effort": "low"}),
    ),
    "effort-level-unsupported": RuleCase(
        "effort-level-unsupported",
        params("claude-opus-4-6", output_config={"effort": "xhigh"}),
        params("claude-opus-4-7", output_config={"effort": "xhigh"}),
    ),
    "temperature-with-top-p": RuleCase(
        "temperature-with-top-p",
        params("claude-sonnet-4-5", temperature=0.3, top_p=0.9),
        params("claude-sonnet-4-5", temperature=0.3),
    ),
    "thinking-with-temperature": RuleCase(
        "thinking-with-temperature",
        params(max_tokens=2048, thinking=THINKING, temperature=0.2),
        params(max_tokens=2048, thinking=THINKING, temperature=1),
    ),
    "thinking-with-top-k": RuleCase(
        "thinking-with-top-k",
        params(max_tokens=2048, thinking=THINKING, top_k=40),
        params(max_tokens=2048, thinking=THINKING),
    ),
    "thinking-with-low-top-p": RuleCase(
        "thinking-with-low-top-p",
        params(max_tokens=2048, thinking=THINKING, top_p=0.9),
        params(max_tokens=2048, thinking=THINKING, top_p=0.95),
    ),
    "schema-subset": RuleCase(
        "schema-subset",
        params(output_config=_format(RAW_SCHEMA)),
        params(output_config=_format(anthropic.transform_schema(RAW_SCHEMA))),
    ),
    "schema-subset-open-object": RuleCase(
        "schema-subset",
        params(output_config=_format(OPEN_SCHEMA)),
        params(output_config=_format(anthropic.transform_schema(OPEN_SCHEMA))),
    ),
    "schema-subset-recursive": RuleCase(
        "schema-subset",
        params(output_config=_format(anthropic.transform_schema(Tree))),
        params(output_config=_format(anthropic.transform_schema(Flat))),
    ),
    "context-window": RuleCase(
        "context-window",
        params(messages=[{"role": "user", "content": _long_prompt(200_000)}]),
        params(messages=[{"role": "user", "content": _long_prompt(190_000)}]),
    ),
    "whitespace-only-text": RuleCase(
        "whitespace-only-text",
        params(messages=[_user({"type": "text", "text": "hi"}, {"type": "text", "text": " \n\t"})]),
        params(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
    ),
    "tool-use-without-result": RuleCase(
        "tool-use-without-result",
        params(tools=[LOOKUP_TOOL], messages=[USER, {"role": "assistant", "content": [_tool_use("toolu_1")]},
                                              {"role": "user", "content": "go on"}]),
        params(tools=[LOOKUP_TOOL], messages=[USER, {"role": "assistant", "content": [_tool_use("toolu_1")]},
                                              {"role": "user", "content": [_tool_result("toolu_1")]}]),
    ),
    "tool-result-unknown-id": RuleCase(
        "tool-result-unknown-id",
        params(tools=[LOOKUP_TOOL], messages=[USER, {"role": "assistant", "content": [_tool_use("toolu_1")]},
                                              {"role": "user", "content": [_tool_result("toolu_1"),
                                                                           _tool_result("toolu_2")]}]),
        params(tools=[LOOKUP_TOOL], messages=[USER, {"role": "assistant", "content": [_tool_use("toolu_1")]},
                                              {"role": "user", "content": [_tool_result("toolu_1")]}]),
    ),
    "cache-ttl-order": RuleCase(
        "cache-ttl-order",
        params(system=[_cached("You sort tickets.", "5m")],
               messages=[{"role": "user", "content": [_cached("ticket", "1h")]}]),
        params(system=[_cached("You sort tickets.", "1h")],
               messages=[{"role": "user", "content": [_cached("ticket", "5m")]}]),
    ),
    "cache-breakpoints": RuleCase(
        "cache-breakpoints",
        params(system=[_cached("a", "5m"), _cached("b", "5m")],
               messages=[{"role": "user", "content": [_cached("c", "5m"), _cached("d", "5m")]}],
               cache_control={"type": "ephemeral"}),
        params(system=[_cached("a", "5m"), _cached("b", "5m")],
               messages=[{"role": "user", "content": [_cached("c", "5m"), _cached("d", "5m")]}]),
    ),
    "citations-on-user-text": RuleCase(
        "citations-on-user-text",
        params(messages=[_user(CITED_TEXT)]),
        params(messages=[_user(CITED_TEXT)]),
        version=NEW_VERSION,
        good_version=OLD_VERSION,
    ),
    "document-in-assistant-turn": RuleCase(
        "document-in-assistant-turn",
        params(messages=DOCUMENT_FROM_ASSISTANT),
        params(messages=DOCUMENT_FROM_ASSISTANT),
        version=NEW_VERSION,
        good_version=OLD_VERSION,
    ),
    "max-tokens-without-the-300k-beta": RuleCase(
        "max-tokens",
        params("claude-opus-4-6", max_tokens=300_000),
        params("claude-opus-4-6", max_tokens=300_000),
        good_betas=("output-300k-2026-03-24",),
    ),
    "max-tokens-300k-beta-not-for-this-model": RuleCase(
        "max-tokens",
        params("claude-haiku-4-5", max_tokens=300_000),
        params("claude-haiku-4-5", max_tokens=64_000),
        betas=("output-300k-2026-03-24",),
    ),
}  # fmt: skip
