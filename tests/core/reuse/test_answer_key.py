from __future__ import annotations

import orjson
import pytest

from airflow_claude_batch.core.reuse.answer_key import answer_key, line_key
from airflow_claude_batch.exceptions import InputError

PARAMS = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "system": "Summarise.",
    "messages": [{"role": "user", "content": "chunk 1"}],
}


def test_the_key_is_the_same_whatever_the_order_of_the_params() -> None:
    reordered = dict(reversed(list(PARAMS.items())))
    assert answer_key(reordered) == answer_key(PARAMS)
    assert len(answer_key(PARAMS)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-sonnet-4-5"},
        {"max_tokens": 65},
        {"system": "Summarise briefly."},
        {"temperature": 0.0},
        {"messages": [{"role": "user", "content": "chunk 1 (edited)"}]},
        {"tools": [{"name": "t", "input_schema": {"type": "object"}}]},
    ],
)
def test_another_model_prompt_or_param_is_another_key(change: dict) -> None:
    assert answer_key({**PARAMS, **change}) != answer_key(PARAMS)


def test_the_custom_id_is_not_part_of_the_key() -> None:
    first = orjson.dumps({"custom_id": "a", "params": PARAMS})
    second = orjson.dumps({"custom_id": "b", "params": PARAMS})
    assert line_key(first)[1] == line_key(second)[1] == answer_key(PARAMS)
    assert line_key(first)[0] == "a"


def test_a_line_that_is_no_request_is_an_input_error() -> None:
    with pytest.raises(InputError):
        line_key(b'{"custom_id": "a"}')
