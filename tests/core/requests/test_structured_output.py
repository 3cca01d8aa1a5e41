"""How an output_schema is asked for: the mode per model, the params it adds, refusals before spend."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from airflow_claude_batch.core.api.model_catalogue import MODELS_ENV_VAR
from airflow_claude_batch.core.requests.rendering import RequestRenderer, RequestTemplate
from airflow_claude_batch.core.requests.structured_output import (
    SCHEMA_TOOL_NAME,
    choose_mode,
    request_additions,
)
from airflow_claude_batch.exceptions import InputError

SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


class Label(pydantic.BaseModel):
    label: str


def test_the_default_is_native_where_the_model_supports_it_else_tool() -> None:
    assert choose_mode(None, SCHEMA, "claude-sonnet-4-6") == "native"
    assert choose_mode(None, SCHEMA, "claude-unknown-9") == "tool"
    assert choose_mode(None, SCHEMA, None) == "tool"
    assert choose_mode(None, None, "claude-sonnet-4-6") is None
    assert choose_mode("TEXT", SCHEMA, "claude-sonnet-4-6") == "text"


def test_native_is_refused_before_spend_for_a_model_without_it(tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models.json"
    models.write_text(
        json.dumps({"models": {"claude-haiku-4-5-20251001": {"supports_structured_output": False}}})
    )
    monkeypatch.setenv(MODELS_ENV_VAR, str(models))
    with pytest.raises(InputError, match="claude-haiku-4-5 does not support structured outputs"):
        choose_mode("native", SCHEMA, "claude-haiku-4-5")
    assert choose_mode(None, SCHEMA, "claude-haiku-4-5") == "tool"


def test_bad_modes_and_a_mode_without_a_schema_are_refused() -> None:
    with pytest.raises(InputError, match="one of native, tool, text"):
        choose_mode("json", SCHEMA, "claude-sonnet-4-6")
    with pytest.raises(InputError, match="needs output_schema"):
        choose_mode("tool", None, "claude-sonnet-4-6")


@pytest.mark.parametrize("schema", [SCHEMA, Label])
def test_every_request_carries_the_schema(schema: object) -> None:
    native = request_additions("native", schema)
    assert native["output_config"]["format"]["type"] == "json_schema"
    assert native["output_config"]["format"]["schema"]["properties"]["label"]["type"] == "string"
    tool = request_additions("tool", schema)
    assert tool["tool_choice"] == {"type": "tool", "name": SCHEMA_TOOL_NAME}
    assert tool["tools"][0]["input_schema"]["required"] == ["label"]
    assert request_additions("text", schema) == {}


def _params(template: RequestTemplate, record: dict) -> dict:
    line = RequestRenderer(template).render(record, "test:1").line
    return json.loads(line)["params"]


def test_template_and_render_requests_both_get_the_additions() -> None:
    additions = request_additions("tool", SCHEMA)
    template = RequestTemplate(model="claude-sonnet-4-6", additions=additions)
    params = _params(template, {"id": "a", "text": "hi"})
    assert params["tool_choice"]["name"] == SCHEMA_TOOL_NAME

    own_tool = {"name": "lookup", "input_schema": {"type": "object"}}

    def render(record: dict) -> dict:
        return {"messages": [{"role": "user", "content": record["text"]}], "tools": [own_tool]}

    params = _params(
        RequestTemplate(model="claude-sonnet-4-6", render=render, additions=additions),
        {"id": "a", "text": "hi"},
    )
    assert [tool["name"] for tool in params["tools"]] == ["lookup", SCHEMA_TOOL_NAME]

    def forcing(record: dict) -> dict:
        return {**render(record), "tool_choice": {"type": "tool", "name": "lookup"}}

    with pytest.raises(InputError, match="render sets tool_choice"):
        _params(
            RequestTemplate(model="claude-sonnet-4-6", render=forcing, additions=additions),
            {"id": "a", "text": "hi"},
        )
