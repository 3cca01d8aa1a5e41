"""Input columns carried into the run-folder rows and the flat output."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.requests.passthrough import load_passthrough, parse_fields, write_passthrough
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.results.flat_output import flat_record, write_flat_output
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import InputError
from tests.core.batch_results import errored, read_rows, succeeded, write_shard, write_shard_list

RECORDS = [
    ({"id": "a", "text": "x", "title": "Invoice", "expected": "billing"}, "in.jsonl:1"),
    ({"id": "b", "text": "y", "title": "Crash"}, "in.jsonl:2"),
]


def test_fields_are_carried_into_every_row_and_the_flat_output(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    assert write_passthrough(folder, RECORDS, "id", parse_fields("title, expected")) == 2
    shard = write_shard(folder, 0, 0, ["a", "b"])
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=lambda: iter([succeeded("a", '{"label": "billing"}'), errored("b")]),
        prices=PriceTable.load(),
        validator=OutputValidator(output_schema=schema),
    )
    [row] = read_rows(folder.shard_outcome(0, 0, "succeeded"))
    assert row["passthrough"] == {"title": "Invoice", "expected": "billing"}
    [error] = read_rows(folder.shard_outcome(0, 0, "errored"))
    assert error["passthrough"] == {"title": "Crash", "expected": None}
    assert flat_record(row) == {
        "title": "Invoice",
        "expected": "billing",
        "label": "billing",
        "custom_id": "a",
    }
    write_shard_list(folder, 0, [shard])
    target = folder.root / "out.jsonl"
    assert write_flat_output(folder, target, max_rounds=1) == 1
    assert load_passthrough(folder, ["b"]) == {"b": {"title": "Crash", "expected": None}}


def test_a_run_without_passthrough_fields_keeps_its_rows_as_they_were(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    assert load_passthrough(folder) is None
    assert parse_fields(None) == ()
    with pytest.raises(InputError, match="list of record field names"):
        parse_fields([1])
