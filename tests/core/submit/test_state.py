"""The submit state record, its file, the shard fingerprint, and the claims index."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.state import (
    STATE_SCHEMA_VERSION,
    SubmitState,
    fingerprint_shard,
    format_utc,
    parse_utc,
    read_state,
    write_state,
)
from airflow_claude_batch.exceptions import InputError, StorageError


def intent(**changes: object) -> SubmitState:
    values: dict[str, object] = {
        "shard_uri": "file:///runs/d/r/round-0/shard-00000.requests.jsonl",
        "fingerprint": "ab" * 32,
        "request_count": 3,
        "body_bytes": 120,
        "intent_at": "2026-01-31T18:00:00.000000Z",
        "status": "intent",
    }
    values.update(changes)
    return SubmitState(**values)  # type: ignore[arg-type]


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "round-0" / "shard-00000.state.json"
    state = intent(newest_batch_before="msgbatch_older").submitted("msgbatch_1", "2026-01-31T18:00:01Z")
    write_state(path, state)
    assert read_state(path) == state
    stored = orjson.loads(path.read_bytes())
    assert stored["schema_version"] == STATE_SCHEMA_VERSION
    assert stored["status"] == "submitted"
    assert stored["batch_id"] == "msgbatch_1"


def test_missing_file_means_no_state(tmp_path: Path) -> None:
    assert read_state(tmp_path / "round-0" / "shard-00000.state.json") is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"schema_version": 99, "status": "intent"}',
        b'{"schema_version": 1, "status": "intent"}',
        orjson.dumps({**intent().to_dict(), "status": "submitted"}),
        orjson.dumps({**intent().to_dict(), "batch_id": "msgbatch_1"}),
        orjson.dumps({**intent().to_dict(), "intent_at": "yesterday"}),
    ],
)
def test_a_damaged_state_is_an_error_never_no_state(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "shard-00000.state.json"
    path.write_bytes(content)
    with pytest.raises(StorageError, match=r"not (valid JSON|a valid submit state)"):
        read_state(path)


def test_an_unreadable_state_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "shard-00000.state.json"
    path.mkdir()  # reading a directory fails with an OSError that is not "not found"
    with pytest.raises(StorageError, match="cannot read"):
        read_state(path)


def test_times_round_trip_in_utc() -> None:
    moment = parse_utc("2026-01-31T18:00:00.123456789Z")
    assert format_utc(moment) == "2026-01-31T18:00:00.123456Z"
    assert parse_utc("2026-01-31T19:00:00+01:00") == parse_utc("2026-01-31T18:00:00Z")


def test_fingerprint_reads_digest_count_and_body_size(tmp_path: Path) -> None:
    lines = [b'{"custom_id":"a","params":{}}', '{"custom_id":"b","params":{"x":"é"}}'.encode()]
    content = lines[0] + b"\n" + lines[1] + b"\r\n"
    path = tmp_path / "shard.jsonl"
    path.write_bytes(content)
    found = fingerprint_shard(path, chunk_size=7)
    assert found.sha256 == hashlib.sha256(content).hexdigest()
    assert found.request_count == 2
    assert found.body_bytes == batch_body_size(sum(map(len, lines)), 2)
    assert found.body_bytes == len(b'{"requests":[' + b",".join(lines) + b"]}")


def test_fingerprint_of_a_missing_shard_says_how_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="clear the build task"):
        fingerprint_shard(tmp_path / "nope.jsonl")


def test_a_version_1_state_is_still_read_without_a_marker(tmp_path: Path) -> None:
    path = tmp_path / "shard-00000.state.json"
    old = {**intent().submitted("msgbatch_1", None).to_dict(), "schema_version": 1}
    for name in ("intent_id", "marker_id", "settle_at", "earlier_markers", "not_ours"):
        old.pop(name)
    path.write_bytes(orjson.dumps(old))
    state = read_state(path)
    assert state is not None
    assert (state.batch_id, state.marker_id, state.markers) == ("msgbatch_1", None, ())


def test_the_markers_of_a_state_are_its_own_and_the_unresolved_earlier_ones() -> None:
    state = intent(marker_id="acb-marker-2", earlier_markers=("acb-marker-1",))
    assert state.markers == ("acb-marker-2", "acb-marker-1")
    assert intent().markers == ()


def test_fingerprint_reads_the_first_requests_model(tmp_path: Path) -> None:
    path = tmp_path / "shard.jsonl"
    path.write_bytes(
        b'{"custom_id":"a","params":{"model":"claude-haiku-4-5"}}\n{"custom_id":"b","params":{}}\n'
    )
    assert fingerprint_shard(path).model == "claude-haiku-4-5"
    path.write_bytes(b'{"custom_id":"a","params":{}}\n')
    assert fingerprint_shard(path).model is None


@pytest.mark.parametrize("folder", ["_claims", "_answers"])
def test_no_dag_can_take_a_folder_of_the_storage_root(tmp_path: Path, folder: str) -> None:
    with pytest.raises(InputError, match=f"dag_id '{folder}' is a folder the storage root keeps for itself"):
        RunFolder.for_run(tmp_path, folder, "run", "p")
