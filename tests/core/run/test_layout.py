from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.run.layout import RunFolder, safe_segment
from airflow_claude_batch.exceptions import InputError


def test_layout_matches_the_design(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "nightly", "scheduled__2026-11-23T18:00:00+00:00", "classify")
    root = tmp_path / "nightly" / "scheduled__2026-11-23T18:00:00+00:00" / "classify"
    assert folder.shard_requests(0, 3) == root / "round-0" / "shard-00003.requests.jsonl"
    assert folder.shard_state(1, 0) == root / "round-1" / "shard-00000.state.json"
    assert folder.shard_outcome(0, 12, "expired") == root / "round-0" / "shard-00012" / "expired.jsonl"
    assert folder.manifest == root / "manifest.json"
    assert folder.dead_letter == root / "dead-letter.jsonl"


@pytest.mark.parametrize("bad", ["..", "../etc", "a/b", "", "x\x00y", "a\\b", "run id", "a..b"])
def test_unsafe_segments_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="cannot be used in a storage path"):
        safe_segment(bad, "run_id")


def test_unknown_outcome_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        RunFolder(tmp_path).shard_outcome(0, 0, "../../escape")


def test_two_pipelines_of_one_run_never_share_a_folder(tmp_path: Path) -> None:
    run = ("eval_sweep", "manual__2026-12-01T00:00:00+00:00")
    first = RunFolder.for_run(tmp_path, *run, "sonnet_prompt_a")
    second = RunFolder.for_run(tmp_path, *run, "haiku_prompt_a")
    assert first.root != second.root
    assert first.shard_state(0, 0) != second.shard_state(0, 0)
    assert first.manifest != second.manifest
    assert first.storage_root == second.storage_root == tmp_path


def test_the_pipeline_id_is_a_checked_segment(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pipeline_id"):
        RunFolder.for_run(tmp_path, "dag", "run", "../other")
