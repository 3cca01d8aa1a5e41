"""How an ``output_schema`` is asked for in every request, and where the answer's object is read from.

Three ways (``structured_output``):

- ``"native"``: every request carries ``output_config: {"format": {"type": "json_schema", "schema":
  ...}}``; the answer's text is the JSON document. Only for models whose catalogue entry says
  ``supports_structured_output`` (refused before spend, naming the model, otherwise).
- ``"tool"``: every request carries one tool whose ``input_schema`` is the schema, forced with
  ``tool_choice``; the object is that tool call's ``input``. Works on every model with tool use.
- ``"text"``: nothing is added; the text is read as JSON (a Markdown code fence around it is removed).

The default (``None``) is the most reliable choice for the model: ``"native"`` where the model supports
it (the API then constrains decoding to the schema), else ``"tool"`` (the tool's input is generated as
JSON against the schema); a model the catalogue does not know gets ``"tool"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.core.api.schema_rules import SCHEMA_SOURCE, schema_subset_problem
from airflow_claude_batch.exceptions import InputError

STRUCTURED_OUTPUT_MODES = ("native", "tool", "text")
#: The name of the tool built from the schema in ``"tool"`` mode.
SCHEMA_TOOL_NAME = "record_answer"


def schema_dict(output_schema: Any) -> dict[str, Any]:
    """Return the JSON schema of ``output_schema`` (a dict, or a Pydantic model class)."""
    if isinstance(output_schema, Mapping):
        return dict(output_schema)
    if isinstance(output_schema, type) and hasattr(output_schema, "model_json_schema"):
        return output_schema.model_json_schema()
    raise InputError(
        "output_schema must be a JSON-schema dict or a Pydantic model class, got "
        f"{type(output_schema).__name__}"
    )


def api_schema(output_schema: Any) -> dict[str, Any]:
    """Return ``output_schema`` as ``output_config.format`` sends it: in the API's schema subset.

    The anthropic SDK's own helper (``anthropic.transform_schema``, the one ``messages.parse`` uses)
    sets ``additionalProperties: false`` on every object and moves what the API does not support
    (``minimum``, ``maxLength``, ``minItems`` above 1, unknown formats...) into the descriptions. Answers
    are still validated against the user's full schema (``answer_parsing.OutputValidator``).

    :raises InputError: the schema cannot be put in the subset; the message names the keyword.
    """
    from anthropic import transform_schema

    schema = schema_dict(output_schema)
    try:
        transformed = transform_schema(schema)
    except (ValueError, TypeError, AttributeError, AssertionError) as exc:
        raise InputError(
            f"output_schema cannot be sent as a structured output ({exc}); give every schema node a "
            f"'type' (or anyOf/allOf/enum/const), see {SCHEMA_SOURCE}"
        ) from exc
    if transformed.get("type") != "object":
        raise InputError(
            f"output_schema's root has type {transformed.get('type')!r}; structured outputs need an object "
            "at the root: wrap the value in an object with one property"
        )
    problem = schema_subset_problem(transformed, "output_schema")
    if problem is not None:
        path, why = problem
        raise InputError(
            f"output_schema cannot be sent as a structured output: {path}: {why}; remove that keyword "
            f"or use structured_output='tool' (see {SCHEMA_SOURCE})"
        )
    return transformed


def choose_mode(structured_output: str | None, output_schema: Any, model: str | None) -> str | None:
    """Return the mode to use, or ``None`` when there is no schema.

    :param structured_output: ``"native"``, ``"tool"``, ``"text"`` or ``None`` (the model's best).
    :param output_schema: the schema, or ``None``.
    :param model: the model every request uses (``None`` when ``render`` sets it per record).
    :raises InputError: an unknown mode, a mode without a schema, or ``"native"`` for a model that does
        not support it (before anything is spent).
    """
    mode = None if structured_output is None else str(structured_output).strip().lower() or None
    if mode in (None, "none"):
        mode = None
    elif mode not in STRUCTURED_OUTPUT_MODES:
        raise InputError(
            f"structured_output must be one of {', '.join(STRUCTURED_OUTPUT_MODES)} or None, got "
            f"{structured_output!r}"
        )
    if output_schema is None:
        if mode not in (None, "text"):
            raise InputError(f"structured_output={mode!r} needs output_schema=; give the schema or drop it")
        return None
    spec = load_models().find(model) if model else None
    if mode is None:
        return "native" if spec is not None and spec.supports_structured_output else "tool"
    if mode == "native" and spec is not None and not spec.supports_structured_output:
        raise InputError(
            f"structured_output='native': model {model} does not support structured outputs; use "
            "structured_output='tool' (or leave it unset to choose the best way for the model)"
        )
    return mode


def request_additions(mode: str | None, output_schema: Any) -> dict[str, Any]:
    """Return the params every request gets for ``mode`` (``{}`` for ``"text"`` or no schema)."""
    if mode == "native":
        return {"output_config": {"format": {"type": "json_schema", "schema": api_schema(output_schema)}}}
    if mode == "tool":
        tool = {
            "name": SCHEMA_TOOL_NAME,
            "description": "Record the answer as an object that matches the schema.",
            "input_schema": schema_dict(output_schema),
        }
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": SCHEMA_TOOL_NAME}}
    return {}


def merge_additions(params: dict[str, Any], additions: Mapping[str, Any], location: str) -> dict[str, Any]:
    """Add ``additions`` to a rendered request's params; a ``render`` that sets them itself conflicts.

    :raises InputError: ``render`` set ``tool_choice`` or ``output_config.format`` itself.
    """
    if not additions:
        return params
    if "tool_choice" in additions and params.get("tool_choice") is not None:
        raise InputError(
            "render sets tool_choice and structured_output='tool' forces the schema's tool; drop one "
            "(a render that forces its own tool gets tool_calls on every row without output_schema)",
            location=location,
        )
    if "output_config" in additions and (params.get("output_config") or {}).get("format") is not None:
        raise InputError(
            "render sets output_config.format and output_schema is given; drop one", location=location
        )
    merged = dict(params)
    if "tools" in additions:
        merged["tools"] = [*(params.get("tools") or ()), *additions["tools"]]
        merged["tool_choice"] = additions["tool_choice"]
    if "output_config" in additions:
        merged["output_config"] = {**(params.get("output_config") or {}), **additions["output_config"]}
    return merged
