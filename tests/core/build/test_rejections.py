"""One bad record need not cost the night: ``on_invalid_record`` and ``max_rejected_fraction`` at build,
and the ``rejected`` disposition in the manifest and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_claude_batch.core.build.build_step import build_run
from airflow_claude_batch.core.build.rejections import InvalidRecordPolicy
from airflow_claude_batch.core.money.pricing import PRICES_ENV_VAR, PriceTable
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.report_page import render_report
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sources import FileRecords
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import iter_jsonl
from airflow_claude_batch.exceptions import InputError

TEMPLATE = RequestTemplate(model="claude-haiku-4-5", max_tokens=32)
SKIP = InvalidRecordPolicy("skip", 0.5)


@pytest.fixture(autouse=True)
def shipped_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV_VAR, raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(
        tmp_path / "runs", "nightly", "manual__2026-01-01T00:00:00+00:00", "claude_batch"
    )


def tickets(path: Path, count: int, bad: dict[int, dict[str, object]]) -> Path:
    rows = [bad.get(n, {"id": f"t-{n}", "text": f"ticket {n}"}) for n in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


BAD = {
    2: {"id": "t-2", "text": "   "},  # only whitespace
    5: {"id": "bad id with spaces", "text": "ticket 5"},
    7: {"id": "t-1", "text": "a repeated id"},
}


def test_skip_sends_the_good_records_and_lists_the_bad_ones_with_their_rule_and_location(
    folder: RunFolder, tmp_path: Path
) -> None:
    source = tickets(tmp_path / "tickets.jsonl", 10, BAD)

    result = build_run(FileRecords([source]), TEMPLATE, folder, invalid_records=SKIP)

    assert sum(shard.request_count for shard in result.shards) == 7
    rejected = list(iter_jsonl(folder.rejected))
    assert [(row["location"], row["rule"]) for row in rejected] == [
        ("tickets.jsonl:3", "prompt"),
        ("tickets.jsonl:6", "custom_id"),
        ("tickets.jsonl:8", "duplicate_custom_id"),
    ]
    assert [row["custom_id"] for row in rejected] == ["t-2", "bad id with spaces", "t-1"]
    assert "first at tickets.jsonl:2" in rejected[2]["error"]

    manifest, samples = write_ledger(folder, prices=PriceTable.load(), max_rounds=1)

    assert manifest.input_records == 10
    assert manifest.dispositions["rejected"] == 3
    assert manifest.dispositions["pending"] == 7  # nothing was submitted in this test
    assert sum(manifest.dispositions.values()) == manifest.input_records
    assert manifest.files["rejected"] == "rejected.jsonl"
    page = render_report(manifest, samples)
    assert "Rejected at build" in page
    assert "duplicate_custom_id" in page


def test_fail_lists_every_bad_record_in_one_message_and_writes_nothing(
    folder: RunFolder, tmp_path: Path
) -> None:
    source = tickets(tmp_path / "tickets.jsonl", 10, BAD)

    with pytest.raises(InputError) as raised:
        build_run(FileRecords([source]), TEMPLATE, folder)

    message = str(raised.value)
    assert message.startswith("tickets.jsonl:3: ")  # the first bad record leads, as when it is alone
    assert "2 more records cannot be sent" in message
    for location in ("tickets.jsonl:6", "tickets.jsonl:8"):
        assert location in message
    assert "on_invalid_record='skip'" in message
    assert not Path(str(folder.round_dir(0) / "shards.json")).exists()
    assert not Path(str(folder.rejected)).exists()


def test_fail_stops_reading_at_the_twentieth_bad_record(folder: RunFolder, tmp_path: Path) -> None:
    source = tickets(
        tmp_path / "tickets.jsonl", 60, {n: {"id": f"t-{n}", "text": ""} for n in range(0, 60, 2)}
    )

    with pytest.raises(InputError) as raised:
        build_run(FileRecords([source]), TEMPLATE, folder)

    message = str(raised.value)
    assert message.startswith("tickets.jsonl:1: ")
    assert "at least 19 more records cannot be sent (reading stopped at the 20th)" in message
    assert "tickets.jsonl:39 (t-38) [same error]" in message  # the 20th bad record (records 0, 2, ... 38)
    assert "tickets.jsonl:41" not in message


def test_a_lone_bad_record_fails_with_its_own_message_as_before(folder: RunFolder, tmp_path: Path) -> None:
    source = tickets(tmp_path / "tickets.jsonl", 5, {3: {"id": "t-3", "text": ""}})

    with pytest.raises(InputError, match="is empty") as raised:
        build_run(FileRecords([source]), TEMPLATE, folder)

    assert raised.value.location == "tickets.jsonl:4"
    assert raised.value.rule == "prompt"


def test_over_max_rejected_fraction_the_build_fails_before_any_shard_is_listed(
    folder: RunFolder, tmp_path: Path
) -> None:
    source = tickets(tmp_path / "tickets.jsonl", 10, BAD)

    with pytest.raises(
        InputError, match=r"3 of 10 records were rejected \(30.0%\), over max_rejected_fraction=0.2"
    ):
        build_run(FileRecords([source]), TEMPLATE, folder, invalid_records=InvalidRecordPolicy("skip", 0.2))

    assert not Path(str(folder.round_dir(0) / "shards.json")).exists()
    assert len(list(iter_jsonl(folder.rejected))) == 3  # the list to fix them from


def test_every_record_rejected_fails_whatever_the_fraction(folder: RunFolder, tmp_path: Path) -> None:
    source = tickets(tmp_path / "tickets.jsonl", 3, {n: {"id": f"t-{n}", "text": ""} for n in range(3)})

    with pytest.raises(InputError, match="every record"):
        build_run(FileRecords([source]), TEMPLATE, folder, invalid_records=InvalidRecordPolicy("skip", 1.0))


@pytest.mark.parametrize(
    ("mode", "fraction", "problem"),
    [("drop", None, "on_invalid_record"), ("skip", "1.5", "max_rejected_fraction"), ("skip", "x", "0 to 1")],
)
def test_wrong_settings_are_refused(mode: str, fraction: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        InvalidRecordPolicy.parse(mode, fraction)


def test_settings_read_from_templates() -> None:
    assert InvalidRecordPolicy.parse(" Skip ", "0.25") == InvalidRecordPolicy("skip", 0.25)
    assert InvalidRecordPolicy.parse(None, "") == InvalidRecordPolicy()
