"""Conformance: the SDK's own ``create_with_all_params`` calls, each answer validated strictly.

The payload is the one the anthropic SDK's tests send (tests/api_resources/messages/test_batches.py,
``test_method_create_with_all_params``), kept verbatim, plus a copy whose placeholder values are made
valid so that it succeeds. Every answer is parsed with the SDK's pydantic models in strict mode, and no
field the SDK does not know may appear (the SDK models allow extras, so that is checked separately).
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import orjson
from anthropic.types import Message, MessageTokensCount, ModelInfo
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse
from pydantic import BaseModel

from tests.emulator.builders import request

# Verbatim from the SDK's test_method_create_with_all_params.
SDK_ALL_PARAMS: dict[str, Any] = {
    "max_tokens": 1024,
    "messages": [{"content": "Hello, world", "role": "user"}],
    "model": "claude-opus-5",
    "cache_control": {"type": "ephemeral", "ttl": "5m"},
    "container": {"id": "id", "skills": [{"skill_id": "pdf", "type": "anthropic", "version": "latest"}]},
    "inference_geo": "inference_geo",
    "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
    "output_config": {"effort": "low", "format": {"schema": {"foo": "bar"}, "type": "json_schema"}},
    "service_tier": "auto",
    "stop_sequences": ["string"],
    "stream": False,
    "system": [
        {
            "text": "Today's date is 2024-06-01.",
            "type": "text",
            "cache_control": {"type": "ephemeral", "ttl": "5m"},
            "citations": [
                {
                    "cited_text": "The grass is green. The sky is blue.",
                    "document_index": 0,
                    "document_title": "x",
                    "end_char_index": 0,
                    "start_char_index": 0,
                    "type": "char_location",
                }
            ],
        }
    ],
    "temperature": 1,
    "thinking": {"type": "adaptive", "display": "summarized"},
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "tools": [
        {
            "input_schema": {
                "type": "object", "properties": {"location": "bar", "unit": "bar"}, "required": ["location"]
            },
            "name": "name",
            "allowed_callers": ["direct"],
            "cache_control": {"type": "ephemeral", "ttl": "5m"},
            "defer_loading": True,
            "description": "Get the current weather in a given location",
            "eager_input_streaming": True,
            "input_examples": [{"foo": "bar"}],
            "strict": True,
            "type": "custom",
        }
    ],
    "top_k": 5,
    "top_p": 0.7,
}  # fmt: skip


def _valid_all_params() -> dict[str, Any]:
    """The SDK payload with its placeholders made valid: real schemas, no sampling params (the SDK's
    default ``anthropic-version`` refuses them) and a forced call of the tool."""
    params = copy.deepcopy(SDK_ALL_PARAMS)
    for key in ("temperature", "top_k", "top_p"):
        del params[key]
    params["tools"][0]["input_schema"]["properties"] = {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    }
    params["output_config"]["format"]["schema"] = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "additionalProperties": False,  # the structured-outputs subset: every object closed
    }
    return params


def _strict(model: type[BaseModel], raw: bytes | str) -> BaseModel:
    parsed = model.model_validate_json(raw, strict=True)
    _no_unknown_fields(parsed, model.__name__)
    return parsed


def _no_unknown_fields(value: Any, path: str) -> None:
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{path} has fields the SDK does not know: {sorted(value.model_extra)}"
        for name in type(value).model_fields:
            _no_unknown_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_unknown_fields(item, f"{path}[{index}]")


def test_batch_calls_with_every_documented_param(sdk: anthropic.Anthropic):
    valid = _valid_all_params()
    forced = {
        **copy.deepcopy(valid),
        "tool_choice": {"type": "tool", "name": "name"},
        "thinking": {"type": "disabled"},
    }
    created = sdk.messages.batches.with_raw_response.create(
        requests=[
            {"custom_id": "my-custom-id-1", "params": SDK_ALL_PARAMS},
            {"custom_id": "all-params-valid", "params": valid},
            {"custom_id": "all-params-tool", "params": forced},
            request("plain"),
        ],
        user_profile_id="anthropic-user-profile-id",
    )
    batch = _strict(MessageBatch, created.http_response.content)
    for _ in range(200):
        raw = sdk.messages.batches.with_raw_response.retrieve(batch.id).http_response.content
        if _strict(MessageBatch, raw).processing_status == "ended":
            break
    lines = sdk.messages.batches.with_raw_response.results(batch.id).http_response.read().splitlines()
    results = {
        item.custom_id: item.result
        for item in (_strict(MessageBatchIndividualResponse, line) for line in lines)
    }
    # The SDK's payload keeps its placeholders (an invalid tool schema, sampling params): the API refuses it.
    assert results["my-custom-id-1"].type == "errored"
    assert results["my-custom-id-1"].error.error.type == "invalid_request_error"
    assert results["all-params-valid"].type == "succeeded"
    assert [block.type for block in results["all-params-valid"].message.content] == ["thinking", "text"]
    assert results["all-params-tool"].message.stop_reason == "tool_use"
    assert results["plain"].type == "succeeded"

    for page_params in (
        {"limit": 1},
        {"after_id": batch.id, "limit": 1},
        {"before_id": batch.id, "limit": 1},
    ):
        page = sdk.messages.batches.with_raw_response.list(**page_params).http_response.json()
        for item in page["data"]:
            _strict(MessageBatch, orjson.dumps(item))
    _strict(MessageBatch, sdk.messages.batches.with_raw_response.cancel(batch.id).http_response.content)
    _strict(
        DeletedMessageBatch, sdk.messages.batches.with_raw_response.delete(batch.id).http_response.content
    )


def test_messages_count_tokens_and_models_answer_in_the_sdk_shapes(sdk: anthropic.Anthropic):
    valid = _valid_all_params()
    del valid["stream"]
    message = _strict(Message, sdk.messages.with_raw_response.create(**valid).http_response.content)
    assert message.usage.service_tier == "standard"
    counted_params = {
        key: valid[key] for key in ("model", "messages", "system", "tools", "tool_choice", "thinking")
    }
    _strict(
        MessageTokensCount,
        sdk.messages.with_raw_response.count_tokens(**counted_params).http_response.content,
    )
    listed = sdk.models.with_raw_response.list().http_response.json()
    for item in listed["data"]:
        _strict(ModelInfo, orjson.dumps(item))
    _strict(ModelInfo, sdk.models.with_raw_response.retrieve("claude-opus-5").http_response.content)
