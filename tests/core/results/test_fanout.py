"""The fanout of one shard: outcome files, reconciliation, restarts after a cut, the parser's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES
from airflow_claude_batch.exceptions import ResultsStreamInterrupted
from tests.core.batch_results import (
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
        "refused": 0,
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
