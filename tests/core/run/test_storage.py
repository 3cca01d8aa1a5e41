from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.run.storage import (
    atomic_writer,
    iter_jsonl,
    read_json,
    readable_uri,
    write_json,
)
from airflow_claude_batch.exceptions import StorageError


def write_then_fail(target: object, data: bytes) -> None:
    """Start a whole-or-nothing write and die halfway, as a killed task would."""
    with atomic_writer(target) as handle:  # type: ignore[arg-type]
        handle.write(data)
        raise RuntimeError("killed halfway")


def test_atomic_writer_publishes_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.jsonl"
    with atomic_writer(target) as handle:
        handle.write(b'{"a":1}\n')
        assert not target.exists(), "the file must not be visible before it is complete"
    assert target.read_bytes() == b'{"a":1}\n'
    assert [p.name for p in target.parent.iterdir()] == ["out.jsonl"]


def test_atomic_writer_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="killed halfway"):
        write_then_fail(target, b"half")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writer_keeps_the_previous_complete_version_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old complete\n")
    with pytest.raises(RuntimeError, match="killed halfway"):
        write_then_fail(target, b"new but half")
    assert target.read_bytes() == b"old complete\n"


def test_atomic_writer_reports_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="check the storage path"), atomic_writer(blocker / "x.json"):
        pass


def test_read_json_missing_file_is_none_and_garbage_is_an_error(tmp_path: Path) -> None:
    assert read_json(tmp_path / "absent.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StorageError, match="not valid JSON"):
        read_json(bad)


def test_read_json_other_read_errors_are_not_taken_as_missing(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.json"
    folder.mkdir()
    with pytest.raises(StorageError, match="cannot read"):
        read_json(folder)


def test_write_then_read_json_round_trips(tmp_path: Path) -> None:
    value = {"b": [1, 2], "a": "é"}
    write_json(tmp_path / "v.json", value)
    assert read_json(tmp_path / "v.json") == value


def test_iter_jsonl_skips_blank_lines_and_handles_crlf(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"n":1}\r\n\n{"n":2}\n')
    assert [row["n"] for row in iter_jsonl(path)] == [1, 2]


def test_atomic_writer_on_s3_publishes_nothing_when_the_writer_fails(s3: object, moto_endpoint: str) -> None:
    from upath import UPath

    root = UPath("s3://claude-runs/run", endpoint_url=moto_endpoint, key="testing", secret="testing")
    target = root / "out.jsonl"
    with pytest.raises(RuntimeError, match="killed halfway"):
        write_then_fail(target, b"half of a file")
    assert s3.list_objects_v2(Bucket="claude-runs").get("KeyCount", 0) == 0

    with atomic_writer(target) as handle:
        handle.write(b"whole\n")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="claude-runs")["Contents"]]
    assert keys == ["run/out.jsonl"]
    assert s3.get_object(Bucket="claude-runs", Key="run/out.jsonl")["Body"].read() == b"whole\n"


@pytest.mark.parametrize(
    ("location", "readable"),
    [
        ("s3://aws_default@bucket/runs/manifest.json", "s3://bucket/runs/manifest.json"),
        ("gs://user:secret@bucket/a", "gs://bucket/a"),
        ("s3://bucket/a", "s3://bucket/a"),
        ("file:///tmp/runs/a.json", "file:///tmp/runs/a.json"),
        ("/tmp/plain", "/tmp/plain"),
    ],
)
def test_a_readable_uri_has_no_connection_id_or_user_inside(location: str, readable: str) -> None:
    assert readable_uri(location) == readable
