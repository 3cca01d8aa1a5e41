"""``POST /v1/messages``, ``count_tokens`` and ``GET /v1/models`` through the real SDK."""

from __future__ import annotations

import anthropic
import pytest

from tests.emulator.builders import api_call, assert_error, request

TEXT = "Where is my package? The tracking number shows nothing"


def test_messages_create_answers_like_a_batch_request(sdk):
    message = sdk.messages.create(
        model="claude-sonnet-4-6", max_tokens=256, messages=[{"role": "user", "content": TEXT}]
    )
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert message.usage.service_tier == "standard"
    assert message.stop_reason == "end_turn"
    counted = sdk.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": TEXT}]
    )
    assert counted.input_tokens == message.usage.input_tokens


def test_messages_create_refuses_like_the_api(sdk):
    with pytest.raises(anthropic.NotFoundError, match="model: claude-does-not-exist-9"):
        sdk.messages.create(
            model="claude-does-not-exist-9", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError, match="foo: Extra inputs are not permitted"):
        sdk.messages.create(
            model="claude-haiku-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"foo": 1},
        )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: 70000 > 64000"):
        sdk.messages.create(
            model="claude-haiku-4-5",
            max_tokens=70_000,
            timeout=30,
            messages=[{"role": "user", "content": "x"}],
        )


def test_streaming_is_refused_clearly(emulator):
    response = api_call(emulator, "POST", "/v1/messages", json={**request("a")["params"], "stream": True})
    error = assert_error(response, 400, "invalid_request_error")
    assert "without streaming" in error["message"]


def test_count_tokens_checks_the_request_too(sdk):
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="claude-nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
        sdk.messages.count_tokens(
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"max_tokens": 5},
        )


def test_models_list_and_get_carry_the_model_info_fields(sdk):
    models = list(sdk.models.list(limit=3))
    ids = [model.id for model in models]
    assert "claude-haiku-4-5-20251001" in ids
    assert len(ids) == len(set(ids)) >= 8
    created = [model.created_at for model in models]
    assert created == sorted(created, reverse=True)
    haiku = sdk.models.retrieve("claude-haiku-4-5")
    assert haiku.id == "claude-haiku-4-5-20251001"
    assert (haiku.type, haiku.display_name, haiku.lifecycle) == ("model", "Claude Haiku 4.5", "active")
    assert (haiku.max_tokens, haiku.max_input_tokens, haiku.line) == (64_000, 200_000, "haiku")
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("claude-HAIKU-4-5")
