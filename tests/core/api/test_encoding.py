"""The encoding must be the SDK's, byte for byte: compared with the installed anthropic SDK itself."""

from __future__ import annotations

import datetime
import enum
import math

import pytest
from anthropic._utils._json import openapi_dumps
from anthropic._utils._prepare import prepare_request_data
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.api.encoding import encode_json, encode_text, sdk_json_bytes
from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.exceptions import InputError


def sdk_body(value: object) -> bytes:
    """What the anthropic SDK puts on the wire for ``value`` as a JSON body."""
    return openapi_dumps(prepare_request_data(value, location="body"))


# Text over all of Unicode except lone surrogates (which UTF-8 cannot carry), with the characters
# encoders are known to disagree on drawn often: control characters, U+2028/2029, DEL, BOM, emoji.
tricky_chars = st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\u2028", "\u2029", "\ufeff", "\\", '"', "/", "\n", "\r", "\t", "😀", "é", "中"]
)
texts = st.lists(st.one_of(tricky_chars, st.characters(exclude_categories=("Cs",))), max_size=40).map("".join)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    finite_floats,
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(texts, children, max_size=5)),
    max_leaves=30,
)
messages_params = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["claude-sonnet-4-6", "claude-haiku-4-5"]),
        "max_tokens": st.integers(min_value=1, max_value=64_000),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "system": texts,
        "temperature": st.floats(min_value=0, max_value=1),
        "top_p": st.floats(min_value=0, max_value=1),
        "metadata": st.fixed_dictionaries({"user_id": texts}),
        "stop_sequences": st.lists(texts, max_size=3),
    },
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_value_is_encoded_exactly_as_the_sdk_sends_it(value: object) -> None:
    assert encode_json(value) == sdk_body(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcXYZ019_-"), min_size=1, max_size=64), messages_params)
def test_requests_are_encoded_exactly_as_the_sdk_sends_them(custom_id: str, params: dict) -> None:
    request = {"custom_id": custom_id, "params": params}
    assert encode_json(request) == sdk_body(request)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_text_is_encoded_as_the_sdk_encodes_it(text: str) -> None:
    assert encode_text(text) == sdk_body(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages_params, min_size=1, max_size=6))
def test_a_shard_sent_as_lines_joined_by_commas_is_the_sdk_body_and_its_size(params_list: list) -> None:
    requests = [{"custom_id": f"r-{i}", "params": params} for i, params in enumerate(params_list)]
    lines = [encode_json(request) for request in requests]
    body = b'{"requests":[' + b",".join(lines) + b"]}"
    assert body == sdk_body({"requests": requests})
    assert len(body) == batch_body_size(sum(len(line) for line in lines), len(lines))


@pytest.mark.parametrize(
    "value",
    [
        1e-05,  # orjson alone writes 0.00001
        -2.5e-07,
        1e16,
        1.7976931348623157e308,
        5e-324,
        0.1 + 0.2,
        -0.0,
        2**64,  # beyond orjson's integers
        -(2**63) - 1,
        {1: "int key", 2.5: "float key", None: "null key"},
        ("a", "tuple"),
        "\u2028 line separator, \x00 nul, \x7f del, \ufeff bom, 😀 emoji, é, 中文",
    ],
)
def test_values_where_fast_encoders_differ_still_match_the_sdk(value: object) -> None:
    assert encode_json(value) == sdk_body(value)


def test_subclasses_of_plain_types_match_the_sdk() -> None:
    class Label(str):
        pass

    class Level(enum.IntEnum):
        HIGH = 3

    value = {"label": Label("urgent"), "level": Level.HIGH, "items": [Label("a")]}
    assert encode_json(value) == sdk_body(value)
    assert encode_json(value) == b'{"label":"urgent","level":3,"items":["a"]}'


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_numbers_that_are_not_json_are_rejected(number: float) -> None:
    with pytest.raises(InputError, match="finite"):
        encode_json({"temperature": number}, location="t.jsonl:3")


def test_a_lone_surrogate_is_rejected_with_its_location() -> None:
    with pytest.raises(InputError, match="surrogate") as raised:
        encode_json({"content": "bad \ud800 text"}, location="t.jsonl:9")
    assert raised.value.location == "t.jsonl:9"
    with pytest.raises(InputError, match="surrogate"):
        encode_text("bad \udfff text", location="t.jsonl:9")


@pytest.mark.parametrize(
    "value", [datetime.date(2026, 1, 1), {1, 2}, object(), b"bytes", enum.Enum("Colour", "RED").RED]
)
def test_values_that_are_not_plain_json_are_rejected_with_the_fix(value: object) -> None:
    with pytest.raises(InputError, match=r"not plain JSON.*model_dump"):
        encode_json({"params": {"value": value}}, location="records():1")


def test_the_reference_encoder_has_the_sdks_settings() -> None:
    value = {"a": "é😀", "b": [1, 2.5, None, True]}
    assert sdk_json_bytes(value) == '{"a":"é😀","b":[1,2.5,null,true]}'.encode()
    assert sdk_json_bytes(value) == sdk_body(value)
