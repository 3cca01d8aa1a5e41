"""Each request is checked as the API checks it: the same error types, the field named in the message."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.emulator.checks.request_checks import check_request
from tests.emulator.builders import post_batch, request, result_lines, wait_ended

CATALOGUE = load_models()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather at a place",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _params(**changes):
    params = request("a", **{k: v for k, v in changes.items() if v is not ...})["params"]
    for key, value in changes.items():
        if value is ...:
            del params[key]
    return params


def _problem(params, version="2023-06-01", count_tokens=False):
    spec, problem = check_request(params, CATALOGUE, version=version, count_tokens=count_tokens)
    assert (spec is None) == (problem is not None)
    return problem


def test_a_plain_request_passes_and_names_its_model():
    spec, problem = check_request(_params(), CATALOGUE, version="2023-06-01")
    assert problem is None
    assert spec.id == "claude-haiku-4-5-20251001"


@pytest.mark.parametrize(
    ("changes", "error_type", "message"),
    [
        ({"model": "claude-does-not-exist-9"}, "not_found_error", "model: claude-does-not-exist-9"),
        ({"model": "Claude-Haiku-4-5"}, "not_found_error", "model: Claude-Haiku-4-5"),
        ({"foo": 1}, "invalid_request_error", "foo: Extra inputs are not permitted"),
        ({"max_tokens": 10_000_000}, "invalid_request_error", "max_tokens: 10000000 > 64000"),
        ({"max_tokens": "many"}, "invalid_request_error", "max_tokens: Input should be a valid integer"),
        ({"messages": [{"role": "user", "content": 123}]}, "invalid_request_error", "messages.0.content"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "invalid_request_error", "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "invalid_request_error", "messages.0.content: Field required"),
        (
            {"messages": [{"role": "user", "content": [{"type": "picture"}]}]},
            "invalid_request_error",
            "Input tag 'picture'",
        ),
        ({"messages": [{"role": "user", "content": ""}]}, "invalid_request_error", "must be non-empty"),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "It is "}]},
            "invalid_request_error",
            "final assistant content cannot end with trailing whitespace",
        ),
        ({"system": 5}, "invalid_request_error", "system:"),
        ({"stop_sequences": "STOP"}, "invalid_request_error", "stop_sequences: Input should be a valid list"),
        ({"metadata": {"team": "x"}}, "invalid_request_error", "metadata.team: Extra inputs"),
        ({"tools": [{"name": "t"}]}, "invalid_request_error", "tools.0.custom.input_schema: Field required"),
        (
            {"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]},
            "invalid_request_error",
            "tools.0.custom.name",
        ),
        (
            {"tools": [{"name": "t", "input_schema": {"type": "object", "properties": {"a": "bar"}}}]},
            "invalid_request_error",
            "JSON schema is invalid",
        ),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "invalid_request_error", "Tool names must be unique"),
        ({"tools": [{"type": "teleport_2030", "name": "x"}]}, "invalid_request_error", "Input tag 'teleport"),
        ({"tool_choice": {"type": "tool", "name": "get_weather"}}, "invalid_request_error", "tool_choice"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "other"}},
            "invalid_request_error",
            "Tool 'other' not found",
        ),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "any"}, "max_tokens": 4000,
             "thinking": {"type": "enabled", "budget_tokens": 2000}},
            "invalid_request_error",
            "Thinking may not be enabled when tool_choice forces tool use",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, "invalid_request_error", "budget_tokens"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 1000},
            "invalid_request_error",
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "array"}}}},
            "invalid_request_error",
            "output_config.format.schema",
        ),
        ({"output_config": {"format": {"type": "xml"}}}, "invalid_request_error", "format.type"),
        (
            {"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]},
            "invalid_request_error",
            "cache_control.ttl",
        ),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)
            ]}]},
            "invalid_request_error",
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        ({"temperature": 1.5}, "invalid_request_error", "temperature: Input should be between 0 and 1"),
        ({"model": "claude-opus-4-7", "temperature": 0.2}, "invalid_request_error", "is not supported"),
    ],
)  # fmt: skip
def test_invalid_requests_get_the_api_error(changes, error_type, message):
    problem = _problem(_params(**changes))
    assert problem is not None
    assert problem.error_type == error_type
    assert message in problem.message


def test_missing_required_fields_are_named():
    assert _problem(_params(max_tokens=...)).message == "max_tokens: Field required"
    assert _problem(_params(messages=...)).message == "messages: Field required"
    # count_tokens takes no max_tokens, and refuses one.
    assert _problem(_params(max_tokens=...), count_tokens=True) is None
    assert _problem(_params(), count_tokens=True).message == "max_tokens: Extra inputs are not permitted"


def test_sampling_params_depend_on_the_api_version():
    assert _problem(_params(temperature=0.2)) is None
    assert _problem(_params(temperature=1, model="claude-opus-4-7")) is None
    newer = _problem(_params(temperature=0.2), version="2026-10-21")
    assert newer.message == "temperature: Extra inputs are not permitted"


def test_valid_tools_thinking_and_structured_output_pass():
    params = _params(
        tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "auto"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        max_tokens=2048,
        output_config={
            "effort": "low",
            "format": {"type": "json_schema", "schema": {"type": "object", "additionalProperties": False}},
        },
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        cache_control={"type": "ephemeral", "ttl": "1h"},
        model="claude-opus-4-5",  # effort is an Opus 4.5-and-later parameter (Haiku 4.5 refuses it)
    )
    assert _problem(params) is None


def test_invalid_requests_end_errored_in_their_batch(emulator):
    body = {
        "requests": [
            request("good"),
            request("extra", foo=1),
            request("too-long", max_tokens=10_000_000),
            request("no-model", model="claude-does-not-exist-9"),
        ]
    }
    response = post_batch(emulator, body)
    assert response.status_code == 200, response.text
    wait_ended(emulator, response.json()["id"])
    errors = {
        line["custom_id"]: line["result"].get("error", {}).get("error")
        for line in result_lines(emulator, response.json()["id"])
    }
    assert errors["good"] is None
    assert errors["extra"] == {
        "type": "invalid_request_error",
        "message": "foo: Extra inputs are not permitted",
    }
    assert errors["too-long"]["type"] == "invalid_request_error"
    assert errors["too-long"]["message"].startswith("max_tokens: 10000000 > 64000")
    assert errors["no-model"] == {"type": "not_found_error", "message": "model: claude-does-not-exist-9"}


def test_requests_are_checked_under_the_create_s_api_version(emulator):
    body = {"requests": [request("sampled", temperature=0.2)]}
    for version, expected in (
        ("2023-06-01", None),
        ("2026-10-21", "temperature: Extra inputs are not permitted"),
    ):
        response = post_batch(emulator, body, version=version)
        assert response.status_code == 200, response.text
        wait_ended(emulator, response.json()["id"])
        (line,) = result_lines(emulator, response.json()["id"])
        assert line["result"].get("error", {}).get("error", {}).get("message") == expected


def test_unknown_fields_of_the_create_body_are_refused(emulator):
    response = post_batch(emulator, {"requests": [request("a")], "priority": 1})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "priority: Extra inputs are not permitted"
    response = post_batch(emulator, {"requests": [{**request("a"), "note": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "requests.0.note: Extra inputs are not permitted"
