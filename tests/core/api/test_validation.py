from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_claude_batch.core.api.limits import CUSTOM_ID_PATTERN, batch_body_size
from airflow_claude_batch.core.api.validation import custom_id_problem, params_problem

GOOD_PARAMS = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("custom_id", "fragment"),
    [
        ("", "empty"),
        ("a" * 65, "at most 64"),
        ("has space", "characters outside"),
        ("ünïcode", "characters outside"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_bad_custom_ids_are_explained(custom_id: object, fragment: str) -> None:
    problem = custom_id_problem(custom_id)
    assert problem is not None
    assert fragment in problem


@given(st.text(max_size=80))
def test_custom_id_check_agrees_with_the_api_rule(text: str) -> None:
    assert (custom_id_problem(text) is None) == bool(CUSTOM_ID_PATTERN.fullmatch(text))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"stream": True}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "16"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"temperature": float("nan")}, "not valid JSON"),
    ],
)
def test_bad_params_are_explained(change: dict, fragment: str) -> None:
    problem = params_problem({**GOOD_PARAMS, **change})
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_missing_required_params_are_named(missing: str) -> None:
    params = {k: v for k, v in GOOD_PARAMS.items() if k != missing}
    assert f"params.{missing} is missing" in (params_problem(params) or "")


def test_good_params_pass() -> None:
    assert params_problem(GOOD_PARAMS) is None


def test_body_size_counts_the_frame_and_the_commas() -> None:
    assert batch_body_size(0, 0) == len(b'{"requests":[]}')
    assert batch_body_size(10, 3) == len(b'{"requests":[') + 10 + 2 + len(b"]}")
