"""The flat output: one joinable row per succeeded record, JSONL or CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from airflow_claude_batch.core.results.flat_output import flat_record, write_flat_output
from airflow_claude_batch.core.run.layout import RunFolder
from tests.core.batch_results import read_rows


def test_flat_records_join_on_custom_id() -> None:
    assert flat_record({"custom_id": "a", "parsed": {"label": "spam"}, "text": "t"}) == {
        "label": "spam",
        "custom_id": "a",
    }
    assert flat_record({"custom_id": "a", "parsed": None, "text": "t"}) == {"custom_id": "a", "text": "t"}
    assert flat_record({"custom_id": "a", "parsed": 3}) == {"custom_id": "a", "parsed": 3}
    assert flat_record({"custom_id": "a", "parsed": {"custom_id": "spoof"}})["custom_id"] == "a"


def test_the_flat_output_is_jsonl_or_csv(folder: RunFolder, tmp_path: Path) -> None:
    rows = [
        {"custom_id": "a", "parsed": {"label": "spam", "tags": ["x"]}},
        {"custom_id": "b", "parsed": {"label": "ham", "score": 0.5}},
    ]
    jsonl = tmp_path / "out" / "labels.jsonl"
    assert write_flat_output(folder, jsonl, max_rounds=1, rows=lambda: iter(rows)) == 2
    assert read_rows(jsonl) == [
        {"label": "spam", "tags": ["x"], "custom_id": "a"},
        {"label": "ham", "score": 0.5, "custom_id": "b"},
    ]
    table = tmp_path / "out" / "labels.csv"
    write_flat_output(folder, table, max_rounds=1, rows=lambda: iter(rows))
    read = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))))
    assert list(read[0]) == ["custom_id", "label", "tags", "score"]
    assert read[0] == {"custom_id": "a", "label": "spam", "tags": '["x"]', "score": ""}
    assert read[1]["score"] == "0.5"
