"""One result line → one outcome row: error rows, the user's parser and schema, tool calls, thinking."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.result_rows import RowPricer, error_row, route_line
from tests.core.batch_results import (
    MODEL,
    succeeded,
)

PRICES = PriceTable.load()
PRICER = RowPricer(PRICES)


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("overloaded_error", True),
        ("api_error", True),
        ("rate_limit_error", True),
        ("timeout_error", True),
        ("invalid_request_error", False),
        ("not_found_error", False),
        ("permission_error", False),
        ("authentication_error", False),
        ("request_too_large", False),
        ("billing_error", False),
        ("something_new_error", False),
    ],
)
def test_errored_rows_say_whether_a_retry_can_help(error_type: str, retryable: bool) -> None:
    error = {"type": "error", "error": {"type": error_type, "message": "m"}, "request_id": "r"}
    assert error_row("x", error)["retryable"] is retryable


def test_an_unrecognised_result_type_stays_accounted_as_a_non_retryable_error() -> None:
    outcome, row, _ = route_line(
        {"custom_id": "x", "result": {"type": "vanished"}}, pricer=PRICER, validator=None
    )
    assert outcome == "errored"
    assert row["retryable"] is False
    assert "vanished" in row["message"]


SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label"],
}


class Label(pydantic.BaseModel):
    label: str
    score: float = 0.0


def _emulated_line(custom_id: str, **params: Any) -> dict[str, Any]:
    """A succeeded line as the emulator renders it for these params (its real answer shapes)."""
    import orjson

    from airflow_claude_batch.core.api.model_catalogue import load_models
    from airflow_claude_batch.emulator.store.digests import digest_request, message

    params = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "refund me"}],
        **params,
    }
    digest = digest_request(custom_id, params, load_models().get(MODEL))
    answer = orjson.loads(orjson.dumps(message("msg_x", digest, None, "batch")))
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": answer}}


def test_thinking_blocks_are_left_out_of_the_text_and_the_parsed_value():
    system = "You sort support tickets.\nLabels: billing, bug, other\n"
    line = _emulated_line("t", system=system, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block["type"] for block in line["result"]["message"]["content"]] == ["thinking", "text"]
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    outcome, row, tokens = route_line(line, pricer=PRICER, validator=OutputValidator(output_schema=schema))
    assert outcome == "succeeded"
    assert row["parsed"]["label"] == "billing"
    assert "thinking" not in row["text"]
    assert tokens.output == line["result"]["message"]["usage"]["output_tokens"]


def test_a_tool_call_answer_routes_with_empty_text():
    tool = {
        "name": "classify",
        "input_schema": {"type": "object", "properties": {"label": {"type": "string"}}},
    }
    line = _emulated_line("t", tools=[tool], tool_choice={"type": "any"})
    assert line["result"]["message"]["stop_reason"] == "tool_use"
    outcome, row, _ = route_line(line, pricer=PRICER, validator=None)
    assert (outcome, row["text"], row["stop_reason"]) == ("succeeded", "", "tool_use")
    # A parser expecting text finds none: the answer is invalid output, billed, never lost.
    outcome, row, tokens = route_line(
        line, pricer=PRICER, validator=OutputValidator(output_schema={"type": "object"})
    )
    assert outcome == "invalid_output"
    assert tokens is not None
    assert row["cost_usd"] > 0


LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def test_a_forced_tool_call_is_kept_in_tool_calls_on_every_row():
    tool = {"name": "classify", "input_schema": LABEL_SCHEMA}
    line = _emulated_line("t", tools=[tool], tool_choice={"type": "tool", "name": "classify"})
    outcome, row, _ = route_line(line, pricer=PRICER, validator=None)
    assert outcome == "succeeded"
    assert [call["name"] for call in row["tool_calls"]] == ["classify"]
    assert row["tool_calls"][0]["input"]["label"] in ("billing", "bug", "other")
    assert row["tool_calls"][0]["id"].startswith("toolu_")


class Verdict(pydantic.BaseModel):
    label: str


def test_thinking_is_dropped_by_default_and_kept_on_request():
    line = _emulated_line("t", thinking={"type": "enabled", "budget_tokens": 1024})
    _, dropped, _ = route_line(line, pricer=PRICER, validator=None)
    assert "thinking" not in dropped
    _, kept, _ = route_line(line, pricer=PRICER, validator=OutputValidator.from_options(keep_thinking=True))
    assert [block["type"] for block in kept["thinking"]] == ["thinking"]
    assert kept["thinking"][0]["signature"]
    assert kept["text"] == dropped["text"]


def test_a_truncated_answer_says_so_in_its_invalid_output_row():
    line = succeeded("t", '{"label": "bil', stop_reason="max_tokens")
    outcome, row, _ = route_line(line, pricer=PRICER, validator=OutputValidator(output_schema=LABEL_SCHEMA))
    assert outcome == "invalid_output"
    assert "cut at max_tokens" in row["error"]
    assert row["stop_reason"] == "max_tokens"
