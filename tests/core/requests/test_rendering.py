from __future__ import annotations

import re

import orjson
import pytest
from anthropic._utils._json import openapi_dumps
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.requests.rendering import (
    EncodedRequest,
    RequestRenderer,
    RequestTemplate,
)
from airflow_claude_batch.exceptions import InputError

API_ID_RULE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MODEL = "claude-sonnet-4-6"


def render_one(record: dict, **template: object) -> EncodedRequest:
    template.setdefault("model", MODEL)
    return RequestRenderer(RequestTemplate(**template)).render(record, "t.jsonl:7")


def request_of(encoded: EncodedRequest) -> dict:
    return orjson.loads(encoded.line)


# --- templates -------------------------------------------------------------------------------------


def test_a_record_becomes_a_request_with_its_own_id() -> None:
    encoded = render_one({"id": "ticket-42", "text": "Refund please", "other": 1}, max_tokens=64)
    assert request_of(encoded) == {
        "custom_id": "ticket-42",
        "params": {
            "model": MODEL,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Refund please"}],
        },
    }
    assert encoded.line.endswith(b"\n")
    assert (encoded.custom_id, encoded.location, encoded.model, encoded.max_tokens) == (
        "ticket-42",
        "t.jsonl:7",
        MODEL,
        64,
    )
    assert encoded.size == len(encoded.line) - 1


def test_fields_can_be_renamed() -> None:
    encoded = render_one({"ticket_id": "T1", "body": "Hi"}, custom_id_field="ticket_id", prompt_field="body")
    assert request_of(encoded)["custom_id"] == "T1"
    assert request_of(encoded)["params"]["messages"][0]["content"] == "Hi"


def test_a_plain_system_prompt() -> None:
    encoded = render_one({"id": "a", "text": "x"}, system="Classify the ticket.")
    assert request_of(encoded)["params"]["system"] == "Classify the ticket."
    assert encoded.cache_prefix.size == 0


@pytest.mark.parametrize(
    ("ttl", "cache_control"),
    [("5m", {"type": "ephemeral"}), ("1h", {"type": "ephemeral", "ttl": "1h"})],
)
def test_a_system_prompt_marked_for_caching(ttl: str, cache_control: dict) -> None:
    encoded = render_one({"id": "a", "text": "x"}, system="Classify.", cache_system=ttl)
    assert request_of(encoded)["params"]["system"] == [
        {"type": "text", "text": "Classify.", "cache_control": cache_control}
    ]
    assert encoded.cache_prefix.size > 0


def test_a_list_prompt_is_sent_as_content_blocks() -> None:
    blocks = [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ]
    encoded = render_one({"id": "a", "text": blocks})
    assert request_of(encoded)["params"]["messages"] == [{"role": "user", "content": blocks}]


@settings(max_examples=200, deadline=None)
@given(
    custom_id=st.from_regex(API_ID_RULE, fullmatch=True),
    prompt=st.text(min_size=1).filter(lambda text: not text.isspace()),
    system=st.one_of(st.none(), st.text(min_size=1).filter(lambda text: not text.isspace())),
    cache=st.sampled_from([None, "5m", "1h"]),
    max_tokens=st.integers(min_value=1, max_value=128_000),
)
def test_template_lines_are_the_sdk_encoding_of_the_request(
    custom_id: str, prompt: str, system: str | None, cache: str | None, max_tokens: int
) -> None:
    template = RequestTemplate(
        model=MODEL, max_tokens=max_tokens, system=system, cache_system=cache if system else None
    )
    encoded = RequestRenderer(template).render({"id": custom_id, "text": prompt}, "h:1")
    params: dict = {"model": MODEL, "max_tokens": max_tokens}
    if system:
        params["system"] = template.system_param()
    params["messages"] = [{"role": "user", "content": prompt}]
    assert encoded.line == openapi_dumps({"custom_id": custom_id, "params": params}) + b"\n"


# --- custom_id -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(API_ID_RULE, fullmatch=True)))
def test_an_id_is_accepted_exactly_when_the_api_would_accept_it(custom_id: str) -> None:
    renderer = RequestRenderer(RequestTemplate(model=MODEL))
    if API_ID_RULE.fullmatch(custom_id):
        assert renderer.custom_id({"id": custom_id}, "h:1") == custom_id
    else:
        with pytest.raises(InputError) as raised:
            renderer.custom_id({"id": custom_id}, "h:1")
        assert raised.value.location == "h:1"


@pytest.mark.parametrize(
    ("custom_id", "problem"),
    [
        ("ticket 42", "outside letters, digits"),
        ("a" * 65, "65 characters"),
        ("", "empty"),
        ("ticket-42\n", "line break|outside letters, digits"),
        ("tïcket", "outside letters, digits"),
        (4.5, "must be a string"),
        (True, "must be a string"),
    ],
)
def test_invalid_ids_are_refused_never_rewritten(custom_id: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as raised:
        render_one({"id": custom_id, "text": "x"})
    assert raised.value.location == "t.jsonl:7"
    assert str(raised.value).startswith("t.jsonl:7: ")


def test_an_integer_id_is_written_in_decimal() -> None:
    assert request_of(render_one({"id": 1234, "text": "x"}))["custom_id"] == "1234"


def test_a_missing_id_field_lists_the_fields_and_the_fix() -> None:
    with pytest.raises(
        InputError, match=r"no 'id' field \(its fields: 'ticket', 'text'\); set custom_id_field="
    ):
        render_one({"ticket": "a", "text": "x"})


# --- prompts -----------------------------------------------------------------------------------------


def test_a_missing_prompt_field_names_the_fix() -> None:
    with pytest.raises(InputError, match=r"no 'text' field.*set prompt_field=") as raised:
        render_one({"id": "a", "body": "x"})
    assert raised.value.location == "t.jsonl:7"


@pytest.mark.parametrize("prompt", ["", "   \n", [], None])
def test_an_empty_prompt_is_refused(prompt: object) -> None:
    with pytest.raises(InputError, match=r"empty|no 'text' field"):
        render_one({"id": "a", "text": prompt})


def test_a_prompt_that_is_not_text_is_refused() -> None:
    with pytest.raises(InputError, match="is a int, not text"):
        render_one({"id": "a", "text": 12})


def test_a_lone_surrogate_in_a_prompt_is_refused_with_the_record() -> None:
    with pytest.raises(InputError, match="surrogate") as raised:
        render_one({"id": "a", "text": "broken \udc80"})
    assert raised.value.location == "t.jsonl:7"


# --- render callables ----------------------------------------------------------------------------


def multi_turn(record: dict) -> dict:
    return {
        "messages": [
            {"role": "user", "content": record["question"]},
            {"role": "assistant", "content": "Let me check."},
            {"role": "user", "content": "Go on."},
        ],
        "tools": [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}],
        "temperature": 0.2,
    }


def test_render_returns_full_params_and_the_operator_fills_in_the_rest() -> None:
    encoded = render_one(
        {"id": "a", "question": "Why?"}, render=multi_turn, max_tokens=99, system="Be brief."
    )
    params = request_of(encoded)["params"]
    assert params["messages"][2] == {"role": "user", "content": "Go on."}
    assert params["tools"][0]["name"] == "lookup"
    assert (params["model"], params["max_tokens"], params["system"]) == (MODEL, 99, "Be brief.")
    assert encoded.line == openapi_dumps({"custom_id": "a", "params": params}) + b"\n"


def test_render_wins_over_the_operator_settings() -> None:
    def own(record: dict) -> dict:
        return {
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
            "system": "Own.",
            "messages": [{"role": "user", "content": "x"}],
        }

    encoded = render_one({"id": "a"}, render=own, system="Operator.", cache_system="1h")
    params = request_of(encoded)["params"]
    assert (params["model"], params["max_tokens"], params["system"]) == ("claude-haiku-4-5", 5, "Own.")
    assert (encoded.model, encoded.max_tokens, encoded.cache_prefix.size) == ("claude-haiku-4-5", 5, 0)


def test_render_alone_may_choose_the_model() -> None:
    def own(record: dict) -> dict:
        return {"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "x"}]}

    encoded = RequestRenderer(RequestTemplate(render=own)).render({"id": "a"}, "r:1")
    assert encoded.model == "claude-opus-4-6"


@pytest.mark.parametrize("returned", [None, {}, ""])
def test_a_render_that_returns_nothing_is_refused(returned: object) -> None:
    with pytest.raises(InputError, match="render returned nothing") as raised:
        render_one({"id": "a"}, render=lambda record: returned)
    assert raised.value.location == "t.jsonl:7"


def test_a_failing_render_names_the_record_and_the_error() -> None:
    with pytest.raises(InputError, match="render failed: KeyError") as raised:
        render_one({"id": "a"}, render=lambda record: {"messages": record["missing"]})
    assert raised.value.location == "t.jsonl:7"


def test_a_render_that_returns_a_whole_request_is_explained() -> None:
    def whole(record: dict) -> dict:
        return {"custom_id": "a", "params": {"messages": []}}

    with pytest.raises(InputError, match="return only the params"):
        render_one({"id": "a"}, render=whole)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens must be"),
        ({"messages": []}, "non-empty list"),
        ({"system": "only a system prompt"}, "messages is missing"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": float("nan")}, "not valid JSON"),
    ],
)
def test_params_that_the_api_would_refuse_are_refused_first(params: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as raised:
        render_one({"id": "a"}, render=lambda record: params)
    assert raised.value.location == "t.jsonl:7"


# --- template settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "problem"),
    [
        ({}, "model is not set"),
        ({"model": MODEL, "cache_system": "1d", "system": "s"}, "'5m', '1h' or None"),
        ({"model": MODEL, "cache_system": "5m"}, "system is empty"),
        ({"model": MODEL, "max_tokens": 0}, "max_tokens must be"),
        ({"model": MODEL, "custom_id_field": ""}, "custom_id_field"),
        ({"model": " "}, "model must be"),
    ],
)
def test_bad_template_settings_are_input_errors(settings_: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        RequestTemplate(**settings_)


@pytest.mark.parametrize(
    "template",
    [
        {},  # the fast path: the line assembled from pre-encoded pieces
        {"render": lambda record: {"messages": [{"role": "user", "content": record["text"]}]}},
        {"prompt_field": "turns"},  # a list prompt, encoded whole
    ],
    ids=["fast-path", "render", "list-prompt"],
)
def test_an_id_with_the_marker_prefix_is_refused_on_every_build_path(template: dict) -> None:
    record = {
        "id": "acb-marker-0123456789abcdef",
        "text": "hello",
        "turns": [{"role": "user", "content": "hello"}],
    }
    with pytest.raises(InputError, match="starts with 'acb-marker-'") as raised:
        render_one(record, **template)
    assert raised.value.location is not None
    # An id that merely contains it elsewhere is fine.
    assert render_one({**record, "id": "x-acb-marker-1"}, **template).custom_id == "x-acb-marker-1"
