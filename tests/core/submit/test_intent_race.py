"""The intent race: a state record that lost its conditional write is made again or left to the retry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.intent_race import record_change
from airflow_claude_batch.core.submit.state import ShardStateFile
from airflow_claude_batch.exceptions import AfterSubmitError
from tests.core.run.test_conditional_writes import _intent


def test_a_record_that_lost_to_a_note_of_not_ours_is_made_again_over_it(tmp_path: Path) -> None:
    folder = RunFolder(ObjectStoragePath(f"file://{tmp_path}/d/r/p"))
    mine, peer = ShardStateFile(folder, 0, 0), ShardStateFile(folder, 0, 0)
    assert mine.read() is None
    intent = _intent("a")
    mine.write(intent)
    noted = peer.read()
    assert noted is not None
    peer.write(dataclasses.replace(noted, not_ours=("msgbatch_x",)))  # the other submit's lookup

    recorded = record_change(mine, "s", intent, lambda state: state.submitted("msgbatch_1", None))

    assert (recorded.status, recorded.batch_id, recorded.not_ours) == (
        "submitted",
        "msgbatch_1",
        ("msgbatch_x",),
    )
    assert mine.read() == recorded


def test_a_record_over_another_attempts_state_is_left_to_the_retry(tmp_path: Path) -> None:
    folder = RunFolder(ObjectStoragePath(f"file://{tmp_path}/d/r/p"))
    mine, peer = ShardStateFile(folder, 0, 0), ShardStateFile(folder, 0, 0)
    assert mine.read() is None
    intent = _intent("a")
    mine.write(intent)
    assert peer.read() is not None
    peer.write(_intent("b"))

    with pytest.raises(AfterSubmitError, match="changed by another submit"):
        record_change(mine, "s", intent, lambda state: state.failed("HTTP 413"))
    assert mine.read() == _intent("b")
