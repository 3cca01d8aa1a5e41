"""Answer parsing: the output contract (JSON Schema, pydantic model, parser) read on the text or tool call."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.result_rows import route_line
from airflow_claude_batch.exceptions import InputError
from tests.core.batch_results import succeeded
from tests.core.results.test_result_rows import LABEL_SCHEMA, PRICER, SCHEMA, Label, Verdict, _emulated_line


@pytest.mark.parametrize(
    ("text", "parsed", "error"),
    [
        ('{"label": "spam", "score": 0.9}', {"label": "spam", "score": 0.9}, None),
        ('```json\n{"label": "ham"}\n```', {"label": "ham"}, None),
        ('{"label": "eggs"}', None, "schema violation at label"),
        ('{"score": 1}', None, "'label' is a required property"),
        ("not json", None, "not JSON"),
    ],
)
def test_a_json_schema_validates_the_answer(text: str, parsed: Any, error: str | None) -> None:
    validator = OutputValidator(output_schema=SCHEMA)
    outcome, row, _ = route_line(succeeded("x", text), pricer=PRICER, validator=validator)
    if error is None:
        assert outcome == "succeeded"
        assert row["parsed"] == parsed
    else:
        assert outcome == "invalid_output"
        assert error in row["error"]


def test_a_pydantic_model_validates_and_dumps_the_answer() -> None:
    validator = OutputValidator(output_schema=Label)
    outcome, row, _ = route_line(succeeded("x", '{"label": "spam"}'), pricer=PRICER, validator=validator)
    assert (outcome, row["parsed"]) == ("succeeded", {"label": "spam", "score": 0.0})
    outcome, row, _ = route_line(succeeded("y", '{"score": "high"}'), pricer=PRICER, validator=validator)
    assert outcome == "invalid_output"
    assert "Label validation failed" in row["error"]


def test_parser_and_schema_together_validate_the_parsed_value() -> None:
    def parse(text: str) -> dict[str, str]:
        return {"label": text.strip().lower()}

    validator = OutputValidator(output_parser=parse, output_schema=SCHEMA)
    assert route_line(succeeded("x", " SPAM "), pricer=PRICER, validator=validator)[1]["parsed"] == {
        "label": "spam"
    }
    assert route_line(succeeded("y", "maybe"), pricer=PRICER, validator=validator)[0] == "invalid_output"


def test_an_unusable_schema_is_refused_before_any_result_is_read() -> None:
    with pytest.raises(InputError, match="not a valid JSON schema"):
        OutputValidator(output_schema={"type": "no-such-type"})
    with pytest.raises(InputError, match="JSON-schema dict or a Pydantic model class"):
        OutputValidator(output_schema="label")  # type: ignore[arg-type]


def test_a_parser_that_takes_the_message_reads_the_tool_call():
    tool = {"name": "classify", "input_schema": LABEL_SCHEMA}
    line = _emulated_line("t", tools=[tool], tool_choice={"type": "tool", "name": "classify"})

    def parse(text: str, *, message: dict[str, Any]) -> Any:
        return next(b["input"] for b in message["content"] if b["type"] == "tool_use")

    outcome, row, _ = route_line(line, pricer=PRICER, validator=OutputValidator(parse, LABEL_SCHEMA))
    assert outcome == "succeeded"
    assert row["parsed"] == row["tool_calls"][0]["input"]


@pytest.mark.parametrize("mode", ["native", "tool"])
def test_structured_output_answers_are_validated_and_parsed(mode: str):
    from airflow_claude_batch.core.requests.structured_output import request_additions

    line = _emulated_line("t", **request_additions(mode, LABEL_SCHEMA))
    for validator in (OutputValidator(output_schema=LABEL_SCHEMA), OutputValidator(output_schema=Verdict)):
        outcome, row, _ = route_line(line, pricer=PRICER, validator=validator)
        assert outcome == "succeeded", row
        assert row["parsed"]["label"] in ("billing", "bug", "other")
    assert ("tool_calls" in row) is (mode == "tool")


def test_a_tool_answer_that_breaks_the_schema_is_invalid_output():
    from airflow_claude_batch.core.requests.structured_output import request_additions

    line = _emulated_line("t", **request_additions("tool", {"type": "object"}))
    strict = {**LABEL_SCHEMA, "properties": {"label": {"type": "integer"}}}
    outcome, row, _ = route_line(line, pricer=PRICER, validator=OutputValidator(output_schema=strict))
    assert outcome == "invalid_output"
    assert "label" in row["error"]
