"""Reading an answer: its text, tool calls and thinking, and the user's output contract on it.

A Message dict's ``content`` holds text, tool-use and thinking blocks. The row of an answer keeps its
text blocks (``text``), its tool calls (``tool_calls``) and, with ``keep_thinking``, its thinking
blocks. :class:`OutputValidator` turns an answer into the ``parsed`` value with the user's
``output_parser`` and/or ``output_schema`` (from the schema's tool call with
``structured_output="tool"``, else from the text), or raises :class:`InvalidOutput` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from airflow_claude_batch.core.requests.structured_output import SCHEMA_TOOL_NAME
from airflow_claude_batch.exceptions import InputError

_MAX_ERROR_CHARS = 1000
_CODE_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```$", re.DOTALL)


# --------------------------------------------------------------------------------------------------
# The answer's content blocks
# --------------------------------------------------------------------------------------------------


def message_text(message: Mapping[str, Any]) -> str:
    """Return the concatenated text blocks of a Message dict (tool and thinking blocks are skipped)."""
    content = message.get("content") or ()
    if len(content) == 1 and isinstance(content[0], Mapping) and content[0].get("type") == "text":
        return content[0].get("text") or ""  # the common case, without a generator
    return "".join(
        block.get("text") or ""
        for block in content
        if isinstance(block, Mapping) and block.get("type") == "text"
    )


def tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the answer's tool calls as ``[{"id", "name", "input"}]`` (``[]`` when it has none)."""
    return [
        {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
        for block in message.get("content") or ()
        if isinstance(block, Mapping) and block.get("type") in ("tool_use", "server_tool_use")
    ]


def thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the answer's thinking and redacted-thinking blocks as they came."""
    return [
        dict(block)
        for block in message.get("content") or ()
        if isinstance(block, Mapping) and block.get("type") in ("thinking", "redacted_thinking")
    ]


# --------------------------------------------------------------------------------------------------
# The user's output contract: parser and/or schema
# --------------------------------------------------------------------------------------------------


class InvalidOutput(Exception):
    """The answer's text does not parse or does not match the schema; the message says why."""


def _strip_code_fence(text: str) -> str:
    """Return the JSON inside a single Markdown code fence, which models often wrap JSON in."""
    stripped = text.strip()
    match = _CODE_FENCE.match(stripped)
    return match.group(1) if match else stripped


def _short(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."


def _is_pydantic_model(schema: Any) -> bool:
    return isinstance(schema, type) and hasattr(schema, "model_validate") and hasattr(schema, "model_dump")


class OutputValidator:
    """Turn an answer into the ``parsed`` value, or raise ``InvalidOutput``.

    - ``output_parser`` only: ``parsed = output_parser(text)``; a parser that takes a ``message``
      keyword is called ``output_parser(text, message=message)`` with the whole Message dict (tool
      calls, thinking, stop reason); any exception marks the answer invalid.
    - ``output_schema`` only: the object is the input of the schema's tool call when the answer has
      one (``structured_output="tool"``), else the text read as JSON (a surrounding Markdown code fence
      is removed); it is validated, and a Pydantic model class gives ``model.model_dump(mode="json")``.
    - both: the parser's value is validated against the schema.

    :param output_parser: a callable ``text -> value`` (or ``(text, *, message) -> value``).
    :param output_schema: a JSON-schema dict (validated with ``jsonschema``) or a Pydantic model class.
    :param keep_thinking: keep the answer's thinking blocks in the row (``thinking``); dropped otherwise.
    :raises InputError: when the schema itself is not usable.
    """

    def __init__(
        self,
        output_parser: Callable[..., Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        *,
        keep_thinking: bool = False,
    ) -> None:
        if output_parser is not None and not callable(output_parser):
            raise InputError(f"output_parser must be a callable text -> value, got {type(output_parser)}")
        self._parser = output_parser
        self._parser_takes_message = _takes_message(output_parser)
        self.keep_thinking = keep_thinking
        self._model: Any = None
        self._json_validator: Any = None
        if output_schema is None:
            return
        if _is_pydantic_model(output_schema):
            self._model = output_schema
        elif isinstance(output_schema, Mapping):
            self._json_validator = _json_schema_validator(dict(output_schema))
        else:
            raise InputError(
                f"output_schema must be a JSON-schema dict or a Pydantic model class, got "
                f"{type(output_schema).__name__}"
            )

    @classmethod
    def from_options(
        cls,
        output_parser: Callable[..., Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        *,
        keep_thinking: bool = False,
    ) -> OutputValidator | None:
        """Return a validator, or ``None`` when neither a parser, a schema nor ``keep_thinking`` is set."""
        if output_parser is None and output_schema is None and not keep_thinking:
            return None
        return cls(output_parser, output_schema, keep_thinking=keep_thinking)

    def parse(self, text: str, message: Mapping[str, Any] | None = None) -> Any:
        """Return the parsed value of an answer.

        :param text: the answer's text blocks.
        :param message: the whole Message dict, for the schema's tool call and a parser that reads it.
        :raises InvalidOutput: with a short reason when it does not parse or validate.
        """
        value = self._run_parser(text, message) if self._parser is not None else None
        if self._model is None and self._json_validator is None:
            return value
        if self._parser is None:
            tool_input = schema_tool_input(message)
            if tool_input is not None:
                value, text = tool_input, ""
            elif self._model is None:
                value = self._decode_json(text)
        if self._model is not None:
            return self._validate_model(text, value, from_value=self._parser is not None or not text)
        self._validate_json(value)
        return value

    def _run_parser(self, text: str, message: Mapping[str, Any] | None) -> Any:
        assert self._parser is not None
        try:
            if self._parser_takes_message:
                return self._parser(text, message=dict(message or {}))
            return self._parser(text)
        except Exception as exc:
            raise InvalidOutput(_short(f"output_parser raised {type(exc).__name__}: {exc}")) from exc

    @staticmethod
    def _decode_json(text: str) -> Any:
        try:
            return orjson.loads(_strip_code_fence(text))
        except orjson.JSONDecodeError as exc:
            raise InvalidOutput(_short(f"the answer is not JSON: {exc}")) from exc

    def _validate_json(self, value: Any) -> None:
        from jsonschema.exceptions import best_match

        error = best_match(self._json_validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "(root)"
            raise InvalidOutput(_short(f"schema violation at {where}: {error.message}"))

    def _validate_model(self, text: str, value: Any, *, from_value: bool) -> Any:
        from pydantic import ValidationError

        try:
            if from_value:
                instance = self._model.model_validate(value)
            else:
                instance = self._model.model_validate_json(_strip_code_fence(text))
        except ValidationError as exc:
            raise InvalidOutput(_short(f"{self._model.__name__} validation failed: {exc}")) from exc
        return instance.model_dump(mode="json")


def _takes_message(parser: Callable[..., Any] | None) -> bool:
    import inspect

    if parser is None:
        return False
    try:
        parameters = inspect.signature(parser).parameters
    except (TypeError, ValueError):
        return False
    return "message" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def schema_tool_input(message: Mapping[str, Any] | None) -> Any:
    """Return the input of the answer's call of the schema's tool (``structured_output="tool"``)."""
    for block in (message or {}).get("content") or ():
        if (
            isinstance(block, Mapping)
            and block.get("type") == "tool_use"
            and block.get("name") == SCHEMA_TOOL_NAME
        ):
            return block.get("input")
    return None


def _json_schema_validator(schema: dict[str, Any]) -> Any:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        raise InputError(f"output_schema is not a valid JSON schema: {exc.message}; fix the schema") from exc
    return validator_class(schema)
