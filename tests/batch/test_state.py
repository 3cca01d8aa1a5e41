"""The submit state record, its file, the shard fingerprint and the siblings' states."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.batch.limits import batch_body_size
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.state import (
    STATE_SCHEMA_VERSION,
    SubmitState,
    fingerprint_shard,
    format_utc,
    parse_utc,
    read_state,
    sibling_states,
    write_state,
)
from airflow_claude_batch.exceptions import StorageError


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


def test_siblings_are_every_other_state_file_of_the_run(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run", "claude_batch")
    mine = folder.shard_state(0, 0)
    write_state(mine, intent())
    write_state(folder.shard_state(0, 1), intent().submitted("msgbatch_a", None))
    write_state(folder.shard_state(1, 0), intent())
    folder.shard_requests(0, 2).parent.mkdir(parents=True, exist_ok=True)
    folder.shard_requests(0, 2).write_text("{}\n")  # not a state file
    found = dict(sibling_states(folder, mine))
    assert set(found) == {str(folder.shard_state(0, 1)), str(folder.shard_state(1, 0))}
    assert found[str(folder.shard_state(0, 1))].batch_id == "msgbatch_a"


def test_siblings_of_a_run_without_folder_are_none(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run", "claude_batch")
    assert list(sibling_states(folder, folder.shard_state(0, 0))) == []
