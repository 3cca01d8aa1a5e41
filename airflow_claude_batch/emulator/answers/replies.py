"""The content of an answer, shaped as the API shapes it for the request's params.

- ``tool_choice`` of type ``tool`` or ``any`` gives one ``tool_use`` block (no text) whose ``input``
  is generated from the tool's ``input_schema``, and ``stop_reason: "tool_use"``;
- ``thinking`` (``enabled`` or ``adaptive``) puts a ``thinking`` block with a ``signature`` first
  (empty thinking text when ``display`` is ``"omitted"``);
- ``output_config.format`` (JSON schema) makes the text a JSON document valid against the schema;
- otherwise the text is the emulator's answer to the prompt (:mod:`.answers`);
- a ``stop_sequences`` entry found in the text cuts it there (``stop_reason: "stop_sequence"``);
- ``max_tokens`` cuts the answer (thinking first, then text; a tool call that does not fit is left
  out), with ``stop_reason: "max_tokens"``;
- a prompt trigger, for tests: the last user turn containing ``[[emulator:stop_reason=REASON]]`` (REASON
  one of :data:`TRIGGERED_STOP_REASONS`) ends the answer that way: ``refusal`` (a short decline, with
  ``stop_details`` of type ``refusal``), ``pause_turn`` (half the answer), ``model_context_window_exceeded``
  or ``max_tokens`` (the answer cut in half).

Everything is a function of the params and the model, so the same request always gets the same answer,
and another model or prompt gets another.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.api.model_catalogue import ModelSpec
from airflow_claude_batch.emulator.answers.deterministic import answer_text, last_user_text, system_text
from airflow_claude_batch.emulator.answers.schema_values import value_for_schema
from airflow_claude_batch.emulator.ids import derived_id


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer's content and how it stopped.

    :param content: the content blocks, serialised as JSON (a ``str``: orjson's bytes keep a 4 KiB
        buffer each, and a batch holds up to 100,000 answers).
    :param stop_reason: ``end_turn``, ``tool_use``, ``stop_sequence`` or ``max_tokens`` (or a triggered one).
    :param stop_sequence: the stop sequence met, or ``None``.
    :param output_tokens: tokens of the answer as returned (thinking included).
    :param stop_details: the ``stop_details`` object (a refusal's), or ``None``.
    """

    content: str
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    stop_details: dict[str, Any] | None = None

    def blocks(self) -> list[dict[str, Any]]:
        """Return the content blocks as dicts."""
        return orjson.loads(self.content)


def build_reply(params: Mapping[str, Any], spec: ModelSpec) -> Reply:
    """Return the answer to valid Messages ``params`` from model ``spec``.

    :param params: the request's params, already checked by ``request_checks.check_request``.
    :param spec: the model the request names.
    """
    system = system_text(params)
    user = last_user_text(params)
    triggered = _triggered_stop_reason(user)
    if triggered is not None:
        return _triggered_reply(triggered, answer_text(system, user, spec.id), spec, params["max_tokens"])
    seed = f"{spec.id}\x1f{system}\x1f{user}"
    base = answer_text(system, user, spec.id)
    blocks: list[dict[str, Any]] = []
    budget = params["max_tokens"]
    thinking = params.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        text = f"The request asks: {_head(user)}. Answering from the system prompt's instructions."
        shown = "" if thinking.get("display") == "omitted" else text
        tokens = spec.estimate_tokens(len(text))
        if tokens > budget:
            shown = shown[: spec.chars_for_tokens(budget)]
            tokens = budget
        signature = base64.b64encode(hashlib.blake2b(f"{seed}\x1f{text}".encode()).digest()).decode()
        blocks.append({"type": "thinking", "thinking": shown, "signature": signature})
        budget -= tokens
    used = params["max_tokens"] - budget
    forced = _forced_tool(params)
    if forced is not None:
        return _tool_reply(blocks, forced, seed, _json_object(base), spec, budget, used)
    output_format = (params.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        text = orjson.dumps(value_for_schema(output_format["schema"], seed, _json_object(base))).decode()
    else:
        text = base
    return _text_reply(blocks, text, params.get("stop_sequences") or (), spec, budget, used)


#: The stop reasons a prompt may ask for with ``[[emulator:stop_reason=REASON]]``.
TRIGGERED_STOP_REASONS = ("refusal", "pause_turn", "model_context_window_exceeded", "max_tokens")
_TRIGGER = re.compile(r"\[\[emulator:stop_reason=([a-z_]+)\]\]")
REFUSAL_TEXT = "I can't help with that request."


def _triggered_stop_reason(user: str) -> str | None:
    found = _TRIGGER.search(user)
    if found is None or found.group(1) not in TRIGGERED_STOP_REASONS:
        return None
    return found.group(1)


def _triggered_reply(stop_reason: str, text: str, spec: ModelSpec, max_tokens: int) -> Reply:
    """The answer a trigger asks for: a decline, or the answer cut in half with that stop reason."""
    details = None
    if stop_reason == "refusal":
        text = REFUSAL_TEXT
        details = {
            "type": "refusal",
            "category": None,
            "explanation": "The emulator declined because the prompt asked it to (a test trigger).",
        }
    else:
        text = text[: max(len(text) // 2, 1)]
    tokens = min(spec.estimate_tokens(len(text)), max_tokens)
    blocks = [{"type": "text", "text": text}]
    return Reply(_json(blocks), stop_reason, None, max(tokens, 1), details)


def _json(blocks: list[dict[str, Any]]) -> str:
    return orjson.dumps(blocks).decode()


def _head(text: str, words: int = 12) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "") or "(empty prompt)"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _forced_tool(params: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choice = params.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") not in ("tool", "any"):
        return None
    tools = [tool for tool in params.get("tools") or () if isinstance(tool, dict)]
    if choice["type"] == "tool":
        return next((tool for tool in tools if tool.get("name") == choice.get("name")), None)
    custom = [tool for tool in tools if tool.get("type", "custom") == "custom"]
    return (custom or tools or [None])[0]


def _tool_reply(
    blocks: list[dict[str, Any]],
    tool: Mapping[str, Any],
    seed: str,
    hint: dict[str, Any] | None,
    spec: ModelSpec,
    budget: int,
    used: int,
) -> Reply:
    schema = tool.get("input_schema") if isinstance(tool.get("input_schema"), dict) else {"type": "object"}
    tool_input = value_for_schema(schema, seed, hint)
    if not isinstance(tool_input, dict):
        tool_input = {}
    name = str(tool.get("name") or "tool")
    call = {"type": "tool_use", "id": derived_id("toolu_", seed), "name": name, "input": tool_input}
    tokens = spec.estimate_tokens(len(orjson.dumps(call)))
    if tokens > budget:
        return Reply(_json(blocks), "max_tokens", None, max(used + budget, 1))
    return Reply(_json([*blocks, call]), "tool_use", None, max(used + tokens, 1))


def _text_reply(
    blocks: list[dict[str, Any]],
    text: str,
    stop_sequences: Any,
    spec: ModelSpec,
    budget: int,
    used: int,
) -> Reply:
    stop_reason, stop_sequence = "end_turn", None
    found = [(text.find(seq), seq) for seq in stop_sequences if isinstance(seq, str) and seq and seq in text]
    if found:
        position, stop_sequence = min(found)
        text, stop_reason = text[:position], "stop_sequence"
    tokens = spec.estimate_tokens(len(text))
    if tokens > budget:
        text, tokens, stop_reason, stop_sequence = (
            text[: spec.chars_for_tokens(budget)],
            budget,
            "max_tokens",
            None,
        )
    if text or not blocks:
        blocks = [*blocks, {"type": "text", "text": text}]
    return Reply(_json(blocks), stop_reason, stop_sequence, max(used + tokens, 1))
