"""The fanout core: result lines → outcome rows, reconciliation, restarts after a cut, parsing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from airflow_claude_batch.batch.answer_parsing import OutputValidator
from airflow_claude_batch.batch.fanout import fan_out_shard
from airflow_claude_batch.batch.outcome_files import ROW_OUTCOMES
from airflow_claude_batch.batch.pricing import PriceTable
from airflow_claude_batch.batch.request_lines import custom_id_of_line
from airflow_claude_batch.batch.result_rows import RowPricer, error_row, route_line
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.exceptions import InputError, ReconciliationError, ResultsStreamInterrupted
from tests.batch.batch_results import (
    MODEL,
    canceled,
    errored,
    expired,
    read_rows,
    succeeded,
    usage,
    write_shard,
)

PRICES = PriceTable.load()
PRICER = RowPricer(PRICES)


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")


def fan_out(folder: RunFolder, ids: list[str], lines: list[dict[str, Any]], **kwargs: Any) -> Any:
    shard = write_shard(folder, 0, 0, ids)
    return fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=kwargs.pop("open_results", lambda: iter(lines)),
        prices=PRICES,
        batch_id="msgbatch_test",
        **kwargs,
    ), shard


def rows(folder: RunFolder, outcome: str) -> list[dict[str, Any]]:
    return read_rows(folder.shard_outcome(0, 0, outcome))


def test_every_outcome_lands_in_its_file_with_its_row_shape(folder: RunFolder) -> None:
    cached = usage(1000, 200, cache_write_1h=2000, cache_read=5000)
    lines = [
        succeeded("a", "first", cached),
        succeeded("b", "second"),
        errored("c", "overloaded_error", "try later"),
        errored("d", "invalid_request_error", "bad model"),
        expired("e"),
        canceled("f"),
    ]
    summary, _ = fan_out(folder, list("abcdef"), lines, cancel_initiated_at="2026-01-01T00:00:00Z")

    assert summary.outcome_counts == {
        "succeeded": 2,
        "invalid_output": 0,
        "errored": 2,
        "expired": 1,
        "canceled": 1,
    }
    first = rows(folder, "succeeded")[0]
    assert first["custom_id"] == "a"
    assert first["model"] == MODEL
    assert first["text"] == "first"
    assert first["parsed"] is None
    assert first["stop_reason"] == "end_turn"
    assert first["usage"] == cached
    # sonnet 4.6: $3 / $15 per million standard, batch half; 1h cache write 2x input, read 0.1x input
    assert first["cost_usd"] == pytest.approx(0.5 * (1000 * 3 + 2000 * 6 + 5000 * 0.3 + 200 * 15) / 1e6)
    assert rows(folder, "errored") == [
        {
            "custom_id": "c",
            "error_type": "overloaded_error",
            "message": "try later",
            "retryable": True,
            "request_id": "req_1",
        },
        {
            "custom_id": "d",
            "error_type": "invalid_request_error",
            "message": "bad model",
            "retryable": False,
            "request_id": "req_1",
        },
    ]
    assert rows(folder, "expired") == [{"custom_id": "e"}]
    assert rows(folder, "canceled") == [{"custom_id": "f", "cancel_initiated_at": "2026-01-01T00:00:00Z"}]
    assert rows(folder, "invalid_output") == []
    assert summary.tokens.to_dict() == {
        "input": 1100,
        "output": 210,
        "cache_write_5m": 0,
        "cache_write_1h": 2000,
        "cache_read": 5000,
    }
    plain = 0.5 * (100 * 3 + 10 * 15) / 1e6
    assert summary.cost_usd == pytest.approx(first["cost_usd"] + plain)


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


def test_unknown_ids_and_duplicates_are_counted_and_left_out(
    folder: RunFolder, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [succeeded("a"), succeeded("stranger"), succeeded("a", "again"), expired("b"), expired("b")]
    with caplog.at_level(logging.WARNING):
        summary, _ = fan_out(folder, ["a", "b"], lines)

    assert summary.unknown_ids == 1
    assert summary.duplicates == 2
    assert summary.descriptor_counts()["unknown_ids"] == 1
    assert summary.descriptor_counts()["duplicates"] == 2
    assert [r["text"] for r in rows(folder, "succeeded")] == ["ok"]
    assert rows(folder, "expired") == [{"custom_id": "b"}]
    assert "stranger" in caplog.text
    assert "2 repeated result lines" in caplog.text


def test_a_shortfall_is_an_error_and_publishes_nothing(folder: RunFolder) -> None:
    with pytest.raises(ReconciliationError, match=r"msgbatch_test.*2 of 3 requests have no result line"):
        fan_out(folder, ["a", "b", "c"], [succeeded("a")])
    shard_dir = folder.shard_outcome(0, 0, "succeeded").parent
    assert not shard_dir.exists() or list(shard_dir.iterdir()) == []


def test_a_cut_stream_is_read_again_and_every_line_is_written_once(folder: RunFolder) -> None:
    ids = [f"r{i}" for i in range(10)]
    attempts: list[int] = []

    def open_results() -> Iterator[dict[str, Any]]:
        attempts.append(1)
        order = ids if len(attempts) % 2 else list(reversed(ids))  # results come in any order
        for number, custom_id in enumerate(order):
            if len(attempts) < 3 and number == 4 * len(attempts):
                raise ResultsStreamInterrupted("cut")
            yield succeeded(custom_id, custom_id)

    sunk: list[str] = []
    summary, _ = fan_out(
        folder, ids, [], open_results=open_results, sink=lambda row: sunk.append(row["custom_id"])
    )

    assert len(attempts) == 3
    assert summary.stream_restarts == 2
    assert summary.duplicates == 0
    written = [row["custom_id"] for row in rows(folder, "succeeded")]
    assert sorted(written) == sorted(ids)
    assert len(written) == len(set(written))
    assert sorted(sunk) == sorted(ids)


def test_a_duplicate_within_one_reading_is_still_counted_after_a_restart(folder: RunFolder) -> None:
    calls: list[int] = []

    def open_results() -> Iterator[dict[str, Any]]:
        calls.append(1)
        yield succeeded("a")
        yield succeeded("a")
        if len(calls) == 1:
            raise ResultsStreamInterrupted("cut")
        yield succeeded("b")

    summary, _ = fan_out(folder, ["a", "b"], [], open_results=open_results)
    assert summary.duplicates == 1
    assert [r["custom_id"] for r in rows(folder, "succeeded")] == ["a", "b"]


def test_too_many_cuts_give_up_and_publish_nothing(folder: RunFolder) -> None:
    def open_results() -> Iterator[dict[str, Any]]:
        yield succeeded("a")
        raise ResultsStreamInterrupted("cut again")

    with pytest.raises(ResultsStreamInterrupted):
        fan_out(folder, ["a", "b"], [], open_results=open_results, max_stream_restarts=2)
    assert not folder.shard_outcome(0, 0, "succeeded").exists()


def test_a_rerun_writes_identical_files(folder: RunFolder) -> None:
    lines = [succeeded("a"), errored("b"), expired("c"), canceled("d")]
    fan_out(folder, list("abcd"), lines)
    first = {o: Path(str(folder.shard_outcome(0, 0, o))).read_bytes() for o in ROW_OUTCOMES}
    fan_out(folder, list("abcd"), lines)
    second = {o: Path(str(folder.shard_outcome(0, 0, o))).read_bytes() for o in ROW_OUTCOMES}
    assert first == second
    assert sorted(
        p.name for p in Path(str(folder.shard_outcome(0, 0, "succeeded"))).parent.iterdir()
    ) == sorted(f"{o}.jsonl" for o in ROW_OUTCOMES)


def test_an_output_parser_fills_parsed_and_its_failures_are_invalid_output(folder: RunFolder) -> None:
    lines = [succeeded("a", "42"), succeeded("b", "forty-two", stop_reason="max_tokens")]
    summary, _ = fan_out(folder, ["a", "b"], lines, validator=OutputValidator.from_options(int))

    assert rows(folder, "succeeded")[0]["parsed"] == 42
    invalid = rows(folder, "invalid_output")
    assert [r["custom_id"] for r in invalid] == ["b"]
    assert invalid[0]["text"] == "forty-two"
    assert "ValueError" in invalid[0]["error"]
    assert "max_tokens" in invalid[0]["error"]
    assert invalid[0]["cost_usd"] > 0  # a rejected answer was still billed
    assert summary.outcome_counts["invalid_output"] == 1


SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label"],
}


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


class Label(pydantic.BaseModel):
    label: str
    score: float = 0.0


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


def test_custom_id_is_read_from_the_line_start_or_parsed_when_keys_are_reordered() -> None:
    assert custom_id_of_line(b'{"custom_id":"ab-1_2","params":{"model":"m"}}\n') == "ab-1_2"
    assert custom_id_of_line(b'{"params":{"custom_id":"inner"},"custom_id":"outer"}') == "outer"
    with pytest.raises(InputError, match="no custom_id"):
        custom_id_of_line(b'{"params":{}}')


def _emulated_line(custom_id: str, **params: Any) -> dict[str, Any]:
    """A succeeded line as the emulator renders it for these params (its real answer shapes)."""
    import orjson

    from airflow_claude_batch.batch.models import get_model
    from airflow_claude_batch.emulator.digests import digest_request, message

    params = {
        "model": MODEL,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "refund me"}],
        **params,
    }
    digest = digest_request(custom_id, params, get_model(MODEL))
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
    from airflow_claude_batch.batch.structured_output import request_additions

    line = _emulated_line("t", **request_additions(mode, LABEL_SCHEMA))
    for validator in (OutputValidator(output_schema=LABEL_SCHEMA), OutputValidator(output_schema=Verdict)):
        outcome, row, _ = route_line(line, pricer=PRICER, validator=validator)
        assert outcome == "succeeded", row
        assert row["parsed"]["label"] in ("billing", "bug", "other")
    assert ("tool_calls" in row) is (mode == "tool")


class Verdict(pydantic.BaseModel):
    label: str


def test_a_tool_answer_that_breaks_the_schema_is_invalid_output():
    from airflow_claude_batch.batch.structured_output import request_additions

    line = _emulated_line("t", **request_additions("tool", {"type": "object"}))
    strict = {**LABEL_SCHEMA, "properties": {"label": {"type": "integer"}}}
    outcome, row, _ = route_line(line, pricer=PRICER, validator=OutputValidator(output_schema=strict))
    assert outcome == "invalid_output"
    assert "label" in row["error"]


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
