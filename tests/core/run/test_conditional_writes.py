"""Exclusive writes: create-only and compare-and-swap on local files and on moto's S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.core.run.conditional_writes import create_only, read_versioned, replace_if
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.state import INTENT, ShardStateFile, SubmitState
from airflow_claude_batch.exceptions import WriteConflictError


@pytest.fixture(params=["path", "file", "s3"])
def location(request: Any, tmp_path: Path) -> Any:
    if request.param == "path":
        return tmp_path / "a" / "x.json"
    if request.param == "file":
        return ObjectStoragePath(f"file://{tmp_path}/b/x.json")
    request.getfixturevalue("s3")
    return ObjectStoragePath("s3://claude-runs/c/x.json", conn_id="aws_default")


def test_create_only_lets_one_writer_create_and_replace_if_only_over_the_version_read(location: Any) -> None:
    assert read_versioned(location) is None
    first = create_only(location, b"1")
    with pytest.raises(WriteConflictError):
        create_only(location, b"2")
    read = read_versioned(location)
    assert read is not None
    assert (read.data, read.version) == (b"1", first)
    second = replace_if(location, b"3", first)
    with pytest.raises(WriteConflictError):
        replace_if(location, b"4", first)  # a writer that read before the replace loses
    read = read_versioned(location)
    assert read is not None
    assert (read.data, read.version) == (b"3", second)


def _intent(intent_id: str) -> SubmitState:
    return SubmitState(
        shard_uri="s",
        fingerprint="f" * 64,
        request_count=1,
        body_bytes=10,
        intent_at="2026-01-31T18:00:00.000000Z",
        status=INTENT,
        intent_id=intent_id,
        marker_id=f"acb-marker-{intent_id}",
    )


def test_two_state_writers_that_both_read_nothing_cannot_both_write(tmp_path: Path) -> None:
    folder = RunFolder(ObjectStoragePath(f"file://{tmp_path}/d/r/p"))
    first, second = ShardStateFile(folder, 0, 0), ShardStateFile(folder, 0, 0)
    assert first.read() is None
    assert second.read() is None
    first.write(_intent("a"))
    with pytest.raises(WriteConflictError):
        second.write(_intent("b"))
    assert second.read() == _intent("a")
    second.write(_intent("b"))  # over the version it has now read
    with pytest.raises(WriteConflictError):
        first.write(_intent("c"))  # its version is stale
    assert first.read() == _intent("b")
