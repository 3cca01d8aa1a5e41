"""Answers shaped like the API's: forced tools, thinking, structured output, stop sequences."""

from __future__ import annotations

import anthropic
import orjson
import pytest
from jsonschema import Draft202012Validator

from airflow_claude_batch.emulator.answers.schema_values import value_for_schema
from tests.emulator.builders import post_batch, request, result_lines, wait_ended

TICKET_SYSTEM = "You sort support tickets.\nLabels: billing, bug, feature_request, account, shipping, other\n"
TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {
            "type": "string",
            "enum": ["billing", "bug", "feature_request", "account", "shipping", "other"],
        },
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}
ORDER_SCHEMA = {
    "type": "object",
    "$defs": {"line": {"type": "object", "properties": {"sku": {"type": "string", "minLength": 3},
                                                         "qty": {"type": "integer", "minimum": 1}},
                       "required": ["sku", "qty"]}},
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 2},
        "express": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
        "placed": {"type": "string", "format": "date-time"},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    },
    "required": ["order_id", "lines", "express"],
}  # fmt: skip


def _create(sdk: anthropic.Anthropic, **params):
    body = {"model": "claude-haiku-4-5", "max_tokens": 512, **params}
    body.setdefault("messages", [{"role": "user", "content": "I was charged twice, please refund"}])
    return sdk.messages.create(**body)


def test_a_forced_tool_gives_a_tool_use_block_valid_for_its_schema(sdk):
    tool = {"name": "record_order", "description": "Record an order", "input_schema": ORDER_SCHEMA}
    message = _create(sdk, tools=[tool], tool_choice={"type": "tool", "name": "record_order"})
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "record_order"
    assert block.id.startswith("toolu_")
    Draft202012Validator(ORDER_SCHEMA).validate(block.input)
    again = _create(sdk, tools=[tool], tool_choice={"type": "any"})
    assert again.content[0].input == block.input  # deterministic: the same prompt, the same input


def test_the_sample_classifier_fills_a_forced_tool_with_its_answer(sdk):
    tool = {"name": "classify", "input_schema": TICKET_SCHEMA}
    labels = []
    for text in ("I was charged twice, please refund", "The app crashes with an error"):
        message = _create(
            sdk,
            system=TICKET_SYSTEM,
            messages=[{"role": "user", "content": text}],
            tools=[tool],
            tool_choice={"type": "tool", "name": "classify"},
        )
        labels.append(message.content[0].input["label"])
    assert labels == ["billing", "bug"]


def test_thinking_comes_first_with_a_signature(sdk):
    message = _create(sdk, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking
    assert thinking.signature
    assert text.type == "text"
    assert message.stop_reason == "end_turn"
    adaptive = {"type": "adaptive", "display": "omitted"}  # adaptive thinking: Claude 4.6 and later
    omitted = _create(sdk, model="claude-sonnet-4-6", max_tokens=2048, thinking=adaptive)
    assert omitted.content[0].type == "thinking"
    assert omitted.content[0].thinking == ""


def test_structured_output_is_json_valid_against_the_schema(sdk):
    for raw in (TICKET_SCHEMA, ORDER_SCHEMA):
        # The API takes a subset of JSON schema: sent raw (minimum, minItems: 2...) it is refused; the
        # SDK's transform_schema puts it in the subset, and the answer is valid against what was sent.
        with pytest.raises(anthropic.BadRequestError, match=r"is not supported|additionalProperties"):
            _create(sdk, output_config={"format": {"type": "json_schema", "schema": raw}})
        schema = anthropic.transform_schema(raw)
        message = _create(sdk, output_config={"format": {"type": "json_schema", "schema": schema}})
        (block,) = message.content
        Draft202012Validator(schema).validate(orjson.loads(block.text))
    classified = _create(
        sdk,
        system=TICKET_SYSTEM,
        output_config={
            "format": {"type": "json_schema", "schema": anthropic.transform_schema(TICKET_SCHEMA)}
        },
    )
    assert orjson.loads(classified.content[0].text)["label"] == "billing"


def test_a_stop_sequence_in_the_answer_stops_it(sdk):
    full = _create(sdk).content[0].text
    stop = full.split()[2]
    message = _create(sdk, stop_sequences=["NEVER-THERE", stop])
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == stop
    assert message.content[0].text == full[: full.index(stop)]
    assert _create(sdk, stop_sequences=["NEVER-THERE"]).stop_reason == "end_turn"


def test_answers_depend_on_model_and_prompt(sdk):
    def text(model: str, prompt: str) -> str:
        return _create(sdk, model=model, messages=[{"role": "user", "content": prompt}]).content[0].text

    assert text("claude-haiku-4-5", "Tell me about tides") == text("claude-haiku-4-5", "Tell me about tides")
    assert text("claude-haiku-4-5", "Tell me about tides") != text("claude-sonnet-4-6", "Tell me about tides")
    assert text("claude-haiku-4-5", "Tell me about tides") != text("claude-haiku-4-5", "Tell me about moons")


def test_batch_results_carry_the_same_shapes(emulator):
    tool = {"name": "classify", "input_schema": TICKET_SCHEMA}
    body = {
        "requests": [
            request("tool", system=TICKET_SYSTEM, tools=[tool], tool_choice={"type": "any"}),
            request("think", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}),
        ]
    }
    batch_id = post_batch(emulator, body).json()["id"]
    wait_ended(emulator, batch_id)
    by_id = {line["custom_id"]: line["result"]["message"] for line in result_lines(emulator, batch_id)}
    assert by_id["tool"]["stop_reason"] == "tool_use"
    assert [block["type"] for block in by_id["tool"]["content"]] == ["tool_use"]
    assert [block["type"] for block in by_id["think"]["content"]] == ["thinking", "text"]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 30, "maxLength": 40},
        {"type": "integer", "minimum": 10, "maximum": 12, "multipleOf": 3},
        {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
        {"type": ["null", "number"], "minimum": -2.5, "maximum": -2.0},
        {"type": "array", "prefixItems": [{"const": 1}, {"enum": ["a", "b"]}], "minItems": 2, "maxItems": 2},
        {"allOf": [{"properties": {"a": {"type": "boolean"}}, "required": ["a"]}, {"required": ["b"]}]},
        {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
        ORDER_SCHEMA,
    ],
)
def test_generated_values_fit_their_schema(schema):
    for seed in ("one", "two", "three"):
        Draft202012Validator(schema).validate(value_for_schema(schema, seed))
    assert value_for_schema(schema, "one") == value_for_schema(schema, "one")
