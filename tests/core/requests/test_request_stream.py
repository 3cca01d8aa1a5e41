"""The request stream: every record's id is unique across the whole run, and an empty input is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_claude_batch.core.requests import request_stream
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.request_stream import iter_requests
from airflow_claude_batch.core.requests.sources import CallableRecords, FileRecords
from airflow_claude_batch.exceptions import InputError
from tests.core.requests.test_rendering import MODEL


def write_jsonl(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": f"text of {i}"}) + "\n" for i in ids))
    return path


def test_a_duplicate_id_across_files_names_both_records(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", ["x-1", "x-2", "x-3"])
    b = write_jsonl(tmp_path / "b.jsonl", ["y-1", "x-2"])
    with pytest.raises(
        InputError, match=r"'x-2' is used twice, first at a.jsonl:2.*unique across the whole run"
    ) as raised:
        list(iter_requests(FileRecords([a, b]), RequestTemplate(model=MODEL)))
    assert raised.value.location == "b.jsonl:2"


def test_every_id_once_passes(tmp_path: Path) -> None:
    ids = [f"id-{n}" for n in range(5000)]
    got = list(
        iter_requests(FileRecords([write_jsonl(tmp_path / "a.jsonl", ids)]), RequestTemplate(model=MODEL))
    )
    assert [request.custom_id for request in got] == ids


def test_a_digest_collision_is_not_taken_for_a_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_stream, "id_digest", lambda custom_id: 42)  # every id collides
    records = [{"id": f"r{n}", "text": "x"} for n in range(20)]
    got = list(iter_requests(CallableRecords(lambda: records), RequestTemplate(model=MODEL)))
    assert len(got) == 20
    with pytest.raises(InputError, match="'r3' is used twice, first at <lambda>\\(\\):4"):
        list(
            iter_requests(
                CallableRecords(lambda: [*records, {"id": "r3", "text": "y"}]), RequestTemplate(model=MODEL)
            )
        )


def test_a_duplicate_in_a_one_shot_iterator_is_still_refused() -> None:
    def once() -> Iterator[tuple[dict, str]]:
        yield {"id": "a", "text": "x"}, "gen:1"
        yield {"id": "a", "text": "y"}, "gen:2"

    with pytest.raises(InputError, match="used by an earlier record") as raised:
        list(iter_requests(once(), RequestTemplate(model=MODEL)))
    assert raised.value.location == "gen:2"


def test_an_empty_input_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no records"):
        list(iter_requests(FileRecords([empty]), RequestTemplate(model=MODEL)))
