"""Checks of one Messages request as the API makes them, with the API's error types and messages.

A batch request that fails a check ends ``errored`` (the API validates batch requests one by one while
processing); ``POST /v1/messages`` and ``count_tokens`` answer the same problem as an HTTP error. Field
paths and phrases follow the API's (``foo: Extra inputs are not permitted``, ``model: claude-x``).
Where the docs say nothing the check is strict and the choice is written in docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.model_catalogue import ModelCatalogue, ModelSpec
from airflow_claude_batch.core.api.request_rules import first_violation, max_output_tokens
from airflow_claude_batch.emulator.checks.surface import api_surface

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MIN_THINKING_BUDGET = 1024
_CACHE_TTLS = ("5m", "1h")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_THINKING_TYPES = ("enabled", "adaptive", "disabled", "between_tools")
_EFFORTS = ("low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class Problem:
    """Why the API refuses a request.

    :param error_type: the API's error type (``invalid_request_error``, ``not_found_error``).
    :param message: the API-style message naming the field.
    """

    error_type: str
    message: str


class _Refused(Exception):
    def __init__(self, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.problem = Problem(error_type, message)


def check_request(
    params: Any,
    catalogue: ModelCatalogue,
    *,
    version: str,
    count_tokens: bool = False,
    betas: tuple[str, ...] = (),
) -> tuple[ModelSpec | None, Problem | None]:
    """Check Messages params; return the model and ``None``, or what the API would answer.

    :param params: the request body (``POST /v1/messages``) or a batch request's ``params``.
    :param catalogue: the models the emulator knows.
    :param version: the request's ``anthropic-version``.
    :param count_tokens: check as ``POST /v1/messages/count_tokens`` (no ``max_tokens``, fewer params).
    :param betas: the request's ``anthropic-beta`` values (the output-300k beta lifts ``max_tokens``).
    """
    try:
        return _check(params, catalogue, version, count_tokens, betas), None
    except _Refused as refused:
        return None, refused.problem


def _check(
    params: Any, catalogue: ModelCatalogue, version: str, count_tokens: bool, betas: tuple[str, ...]
) -> ModelSpec:
    surface = api_surface()
    if not isinstance(params, dict):
        raise _Refused("Input should be a valid dictionary")
    if count_tokens:
        allowed = surface.count_tokens_params
    elif surface.sampling_allowed(version):
        allowed = surface.message_and_sampling_params
    else:
        allowed = surface.message_params
    for key in params:
        if key not in allowed:
            raise _Refused(f"{key}: Extra inputs are not permitted")
    required = ("model", "messages") if count_tokens else ("model", "max_tokens", "messages")
    for key in required:
        if key not in params:
            raise _Refused(f"{key}: Field required")
    model = params["model"]
    if not isinstance(model, str):
        raise _Refused("model: Input should be a valid string")
    spec = catalogue.find(model)
    if spec is None:
        raise _Refused(f"model: {model}", "not_found_error")
    if not count_tokens:
        _check_max_tokens(params["max_tokens"], spec, betas)
        _check_sampling(params, spec)
        _check_stop_sequences(params.get("stop_sequences"))
        _check_metadata(params.get("metadata"))
    _check_system(params.get("system"))
    _check_messages(params["messages"])
    tool_names = _check_tools(params.get("tools"))
    forced = _check_tool_choice(params.get("tool_choice"), tool_names)
    _check_thinking(params.get("thinking"), spec, params.get("max_tokens"), forced, count_tokens)
    _check_output_config(params.get("output_config"), spec)
    _check_cache_control(params)
    if not count_tokens:
        # The API's rules on what a well-formed request may combine: one rule set, shared with the build.
        violation = first_violation(params, spec, version=version, betas=betas)
        if violation is not None:
            raise _Refused(violation.message)
    return spec


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_max_tokens(max_tokens: Any, spec: ModelSpec, betas: tuple[str, ...]) -> None:
    if not _whole(max_tokens):
        raise _Refused("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _Refused("max_tokens: Input should be greater than or equal to 1")
    limit = max_output_tokens(spec, betas)
    if max_tokens > limit:
        raise _Refused(
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number "
            f"of output tokens for {spec.id}"
        )


def _check_sampling(params: Mapping[str, Any], spec: ModelSpec) -> None:
    for key, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Refused(f"{key}: Input should be a valid number")
        if not low <= value <= high:
            raise _Refused(f"{key}: Input should be between {low:g} and {high:g}")
    top_k = params.get("top_k")
    if top_k is not None and (not _whole(top_k) or top_k < 0):
        raise _Refused("top_k: Input should be a whole number >= 0")
    if not spec.supports_sampling_params:
        changed = [key for key in ("top_p", "top_k") if params.get(key) is not None]
        if params.get("temperature") not in (None, 1, 1.0):
            changed.insert(0, "temperature")
        if changed:
            raise _Refused(f"{changed[0]}: is not supported on {spec.id}; remove it from the request")


def _check_stop_sequences(stop_sequences: Any) -> None:
    if stop_sequences is None:
        return
    if not isinstance(stop_sequences, list):
        raise _Refused("stop_sequences: Input should be a valid list")
    for index, sequence in enumerate(stop_sequences):
        if not isinstance(sequence, str):
            raise _Refused(f"stop_sequences.{index}: Input should be a valid string")
        if not sequence.strip():
            raise _Refused(f"stop_sequences.{index}: each stop sequence must contain non-whitespace")


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _Refused("metadata: Input should be a valid dictionary")
    for key, value in metadata.items():
        if key != "user_id":
            raise _Refused(f"metadata.{key}: Extra inputs are not permitted")
        if value is not None and not isinstance(value, str):
            raise _Refused("metadata.user_id: Input should be a valid string")


def _check_text_block(block: Any, where: str) -> None:
    if not isinstance(block, dict):
        raise _Refused(f"{where}: Input should be a valid dictionary")
    if block.get("type") != "text":
        raise _Refused(f"{where}.type: Input should be 'text'")
    if not isinstance(block.get("text"), str):
        raise _Refused(
            f"{where}.text: Field required"
            if "text" not in block
            else f"{where}.text: Input should be a valid string"
        )


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _Refused("system: Input should be a valid string or a list of text blocks")
    for index, block in enumerate(system):
        _check_text_block(block, f"system.{index}")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _Refused("messages: Input should be a valid list")
    if not messages:
        raise _Refused("messages: at least one message is required")
    content_types = api_surface().content_types
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _Refused(f"{where}: Input should be a valid dictionary")
        for key in message:
            if key not in ("role", "content"):
                raise _Refused(f"{where}.{key}: Extra inputs are not permitted")
        if message.get("role") not in ("user", "assistant"):
            raise _Refused(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise _Refused(f"{where}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            if not content:
                raise _Refused(f"{where}.content: text content blocks must be non-empty")
            continue
        if not isinstance(content, list):
            raise _Refused(f"{where}.content: Input should be a valid list")
        for position, block in enumerate(content):
            at = f"{where}.content.{position}"
            if not isinstance(block, dict):
                raise _Refused(f"{at}: Input should be a valid dictionary")
            block_type = block.get("type")
            if block_type not in content_types:
                raise _Refused(
                    f"{at}: Input tag '{block_type}' found using 'type' does not match any of the "
                    "expected tags"
                )
            if block_type == "text":
                _check_text_block(block, at)
                if not block["text"]:
                    raise _Refused(f"{at}.text: text content blocks must be non-empty")
    last = messages[-1]
    if last.get("role") == "assistant" and _ends_with_whitespace(last["content"]):
        raise _Refused("messages: final assistant content cannot end with trailing whitespace")


def _ends_with_whitespace(content: Any) -> bool:
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        content = content[-1].get("text") if content[-1].get("type") == "text" else None
    return isinstance(content, str) and content != content.rstrip()


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise _Refused("tools: Input should be a valid list")
    server_types = api_surface().server_tool_types
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise _Refused(f"{where}: Input should be a valid dictionary")
        tool_type = tool.get("type", "custom")
        if tool_type != "custom" and tool_type not in server_types:
            raise _Refused(
                f"{where}: Input tag '{tool_type}' found using 'type' does not match any of the expected tags"
            )
        name = tool.get("name")
        if tool_type == "custom":
            _check_custom_tool(tool, f"{where}.custom")
        if isinstance(name, str):
            if name in names:
                raise _Refused(f"tools: Tool names must be unique; {name!r} is used twice")
            names.add(name)
    return names


def _check_custom_tool(tool: Mapping[str, Any], where: str) -> None:
    name = tool.get("name")
    if not isinstance(name, str):
        raise _Refused(f"{where}.name: Field required")
    if not TOOL_NAME.fullmatch(name):
        raise _Refused(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise _Refused(f"{where}.input_schema: Field required")
    if schema.get("type") != "object":
        raise _Refused(f"{where}.input_schema.type: Input should be 'object'")
    _check_json_schema(schema, f"{where}.input_schema")


def _check_json_schema(schema: Mapping[str, Any], where: str) -> None:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(dict(schema)).check_schema(dict(schema))
    except SchemaError as exc:
        raise _Refused(f"{where}: JSON schema is invalid: {exc.message}") from exc


def _check_tool_choice(tool_choice: Any, tool_names: set[str]) -> bool:
    """Check ``tool_choice``; return whether it forces a tool call."""
    if tool_choice is None:
        return False
    if not isinstance(tool_choice, dict) or tool_choice.get("type") not in _TOOL_CHOICES:
        raise _Refused(
            "tool_choice: Input tag found using 'type' does not match any of the expected tags: "
            + ", ".join(repr(choice) for choice in _TOOL_CHOICES)
        )
    choice = tool_choice["type"]
    if choice in ("any", "tool") and not tool_names:
        raise _Refused(f"tool_choice: tool_choice.type '{choice}' needs at least one tool in tools")
    if choice == "tool":
        name = tool_choice.get("name")
        if not isinstance(name, str):
            raise _Refused("tool_choice.tool.name: Field required")
        if name not in tool_names:
            raise _Refused(f"tool_choice.tool.name: Tool '{name}' not found in tools")
    return choice in ("any", "tool")


def _check_thinking(
    thinking: Any, spec: ModelSpec, max_tokens: Any, forced_tool: bool, count_tokens: bool
) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in _THINKING_TYPES:
        raise _Refused("thinking: Input tag found using 'type' does not match any of the expected tags")
    if thinking["type"] == "disabled":
        return
    if not spec.supports_thinking:
        raise _Refused(f"thinking: {spec.id} does not support extended thinking")
    if forced_tool:
        raise _Refused("Thinking may not be enabled when tool_choice forces tool use.")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not _whole(budget):
            raise _Refused("thinking.enabled.budget_tokens: Field required")
        if budget < MIN_THINKING_BUDGET:
            raise _Refused(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to "
                f"{MIN_THINKING_BUDGET}"
            )
        if not count_tokens and _whole(max_tokens) and budget >= max_tokens:
            raise _Refused("`max_tokens` must be greater than `thinking.budget_tokens`")


def _check_output_config(output_config: Any, spec: ModelSpec) -> None:
    if output_config is None:
        return
    if not isinstance(output_config, dict):
        raise _Refused("output_config: Input should be a valid dictionary")
    for key in output_config:
        if key not in ("effort", "format"):
            raise _Refused(f"output_config.{key}: Extra inputs are not permitted")
    effort = output_config.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise _Refused(f"output_config.effort: Input should be one of {', '.join(_EFFORTS)}")
    output_format = output_config.get("format")
    if output_format is None:
        return
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        raise _Refused("output_config.format.type: Input should be 'json_schema'")
    if not spec.supports_structured_output:
        raise _Refused(f"output_config.format: {spec.id} does not support structured outputs")
    schema = output_format.get("schema")
    if not isinstance(schema, dict):
        raise _Refused("output_config.format.schema: Field required")
    if schema.get("type") != "object":
        raise _Refused("output_config.format.schema: the root of the schema must be of type 'object'")
    _check_json_schema(schema, "output_config.format.schema")


def _check_cache_control(params: Mapping[str, Any]) -> None:
    controls = []
    stack: list[Any] = [params.get("tools"), params.get("system"), params.get("messages")]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "cache_control" in item and item["cache_control"] is not None:
                controls.append(item["cache_control"])
            if isinstance(item.get("content"), list):
                stack.append(item["content"])
    top = params.get("cache_control")
    for control in (*controls, *([top] if top is not None else [])):
        if not isinstance(control, dict) or control.get("type") != "ephemeral":
            raise _Refused("cache_control.type: Input should be 'ephemeral'")
        if control.get("ttl", "5m") not in _CACHE_TTLS:
            raise _Refused("cache_control.ttl: Input should be '5m' or '1h'")
    # How many and in which order: core/api/cache_rules.py (the top-level breakpoint counted).
