"""Invariant 1 through the results: a download cut anywhere, or a fanout killed anywhere, never loses a
line, never writes one twice, and never leaves a half-written outcome file where a reader looks.

The reference is the shard's outcome files from a clean fanout; every cut or killed fanout, once run
again, must give the same files byte for byte.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION
from airflow_claude_batch.core.results import fanout
from airflow_claude_batch.core.run import outcome_files
from airflow_claude_batch.exceptions import ResultsUnavailableError
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from tests.reliability.harness import RunHarness, lost_and_doubled, records

RECORDS = 6
OUTCOMES = ("succeeded", "invalid_output", "errored", "expired", "canceled", "refused")


def visible_files(run: RunHarness) -> dict[str, bytes]:
    """The shard's outcome files a reader can see (hidden temporary files left out)."""
    folder = run.run_dir / "round-0" / "shard-00000"
    if not folder.exists():
        return {}
    return {path.name: path.read_bytes() for path in folder.iterdir() if not path.name.startswith(".")}


def results_body(emulator: Any, batch_id: str) -> bytes:
    response = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch_id}/results",
        headers={"x-api-key": emulator.api_key, "anthropic-version": ANTHROPIC_VERSION},
        timeout=10.0,
    )
    response.raise_for_status()
    return response.content


@pytest.fixture
def ended(make_run: Any, faulty_emulator: Any) -> tuple[RunHarness, dict[str, Any], dict[str, bytes]]:
    """A one-shard run whose batch ended with every outcome but canceled, and its clean fanout's files.

    The shard's outcome folder is removed afterwards, so each test starts from an unfanned shard.
    """
    faulty_emulator.faults(
        {
            "expire_next": {"fraction": 0.34, "batches": 1},
            "error_next": {"fraction": 0.34, "batches": 1, "error_type": "invalid_request_error"},
        }
    )
    run = make_run(RECORDS, build_kwargs={"max_requests_per_shard": RECORDS}, max_rounds=1)
    [shard] = run.build()
    shard = run.wait(run.submit(shard))
    run.fanout(shard)
    reference = visible_files(run)
    # the outcome files, and the marker's result (the proof the batch is the shard's, and its cost)
    assert set(reference) == {f"{outcome}.jsonl" for outcome in OUTCOMES} | {"marker.json"}
    assert all(reference[f"{outcome}.jsonl"] for outcome in ("succeeded", "errored", "expired"))
    for path in (run.run_dir / "round-0" / "shard-00000").iterdir():
        path.unlink()
    return run, shard, reference


def check_complete(run: RunHarness, reference: dict[str, bytes], figures: Any) -> None:
    assert visible_files(run) == reference
    summary = run.report()
    lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
    figures.lines(len(lost), len(doubled), RECORDS)
    assert not lost
    assert not doubled
    assert summary["reconciled"] is True


def test_a_download_cut_at_any_line_or_byte_is_read_again_and_each_line_written_once(
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]], faulty_emulator: Any, figures: Any
) -> None:
    run, shard, reference = ended
    size = len(results_body(faulty_emulator, shard["batch_id"]))
    line_cuts = [0, 1, RECORDS // 2, RECORDS - 1]
    byte_cuts = [1, 100, size // 2, size - 1]  # in the middle of a line, and one byte short of the end
    downloads_before = faulty_emulator.stats()["results_downloads"]

    for lines in line_cuts:
        faulty_emulator.faults({"cut_results_after_lines": lines})
        run.fanout(shard)
        assert visible_files(run) == reference, f"cut after {lines} lines"
    for offset in byte_cuts:
        faulty_emulator.transport.arm("results", "reset", after_bytes=offset)
        run.fanout(shard)
        assert visible_files(run) == reference, f"cut after {offset} bytes"

    cuts = len(line_cuts) + len(byte_cuts)
    figures.add("faults_injected", cuts)
    # Each fanout read the results twice: the cut download, then the whole one.
    assert faulty_emulator.stats()["results_downloads"] - downloads_before == 2 * cuts
    assert faulty_emulator.transport.total_fired == len(byte_cuts)
    assert run.attempts.retries == 0  # each cut was read again within the same attempt
    check_complete(run, reference, figures)


def test_more_cuts_than_the_fanout_restarts_fail_the_attempt_and_leave_no_file(
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]], faulty_emulator: Any, figures: Any
) -> None:
    run, shard, reference = ended
    restarts = fanout.DEFAULT_MAX_STREAM_RESTARTS
    faulty_emulator.transport.arm("results", "reset", count=restarts + 1, after_bytes=200)
    run.retries = 0

    with pytest.raises(Exception, match="download the results again"):
        run.fanout(shard)
    assert visible_files(run) == {}

    run.retries = 1
    run.fanout(shard)
    figures.add("faults_injected", faulty_emulator.faults_fired)
    check_complete(run, reference, figures)


def _lag_past_now(emulator: Any, batch_id: str, seconds: float) -> float:
    """A results lag that ends ``seconds`` from now for ``batch_id`` (the lag counts from its end)."""
    response = httpx.get(
        f"{emulator.base_url}/v1/messages/batches/{batch_id}",
        headers={"x-api-key": emulator.api_key, "anthropic-version": ANTHROPIC_VERSION},
        timeout=10.0,
    )
    ended_at = datetime.fromisoformat(response.json()["ended_at"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - ended_at).total_seconds() + seconds


def test_results_that_lag_the_ended_status_are_waited_for_within_the_fanout_attempt(
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]], faulty_emulator: Any, figures: Any
) -> None:
    run, shard, reference = ended
    downloads_before = faulty_emulator.stats()["results_downloads"]
    faulty_emulator.faults({"results_lag_seconds": _lag_past_now(faulty_emulator, shard["batch_id"], 2.0)})
    try:
        run.fanout(shard)
    finally:
        faulty_emulator.faults({"results_lag_seconds": None})

    assert faulty_emulator.stats()["results_downloads"] - downloads_before >= 2  # 404 first, then read
    assert run.attempts.retries == 0  # waited for within the attempt, not failed
    figures.add("faults_injected")
    check_complete(run, reference, figures)


def test_results_that_lag_past_the_bound_fail_the_attempt_naming_the_batch(
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]],
    faulty_emulator: Any,
    figures: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, shard, reference = ended
    monkeypatch.setenv("CLAUDE_BATCH_RESULTS_LAG_SECONDS", "1")
    faulty_emulator.faults({"results_lag_seconds": 600})
    run.retries = 0
    try:
        with pytest.raises(ResultsUnavailableError, match="may lag") as lagging:
            run.fanout(shard)
    finally:
        faulty_emulator.faults({"results_lag_seconds": None})
    assert shard["batch_id"] in str(lagging.value)
    assert "Base URL" not in str(lagging.value)
    assert visible_files(run) == {}

    run.retries = 1  # the task's retry, once the results are there
    run.fanout(shard)
    figures.add("faults_injected")
    check_complete(run, reference, figures)


def _fanout_in_worker(shard: dict[str, Any], stage: str, count: int) -> None:
    """Fan the shard out in this (forked) process and kill it at ``stage`` after ``count`` steps."""

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    outcome_files._WRITE_BUFFER_BYTES = 1  # every row reaches its temporary file at once
    steps = 0
    if stage == "writing":
        write = outcome_files.OutcomeFiles.write

        def write_then_die(self: Any, outcome: str, row: Any) -> None:
            nonlocal steps
            write(self, outcome, row)
            steps += 1
            if steps == count:
                die()

        outcome_files.OutcomeFiles.write = write_then_die  # type: ignore[method-assign]
    else:
        rename = ObjectStoragePath.rename

        def rename_until(self: Any, target: Any) -> Any:
            nonlocal steps
            if steps == count:
                die()
            steps += 1
            return rename(self, target)

        ObjectStoragePath.rename = rename_until  # type: ignore[method-assign]
    ClaudeBatchFanoutOperator(task_id="fanout", shard=shard).execute({})
    os._exit(0)  # the kill point was never reached


KILLS = [
    ("writing", 1),
    ("writing", RECORDS // 2),
    ("writing", RECORDS),
    ("publishing", 0),
    ("publishing", 3),
]


@pytest.mark.parametrize(("stage", "count"), KILLS, ids=[f"{stage}-{count}" for stage, count in KILLS])
def test_a_fanout_killed_halfway_shows_no_half_file_and_its_rerun_writes_each_line_once(
    stage: str,
    count: int,
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]],
    faulty_emulator: Any,
    figures: Any,
) -> None:
    run, shard, reference = ended
    worker = multiprocessing.get_context("fork").Process(
        target=_fanout_in_worker, args=(shard, stage, count), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == -signal.SIGKILL
    figures.add("kill_points")
    figures.add("faults_injected")

    seen = visible_files(run)
    # Only whole files are visible: none while rows are written, the published ones while publishing.
    assert {name: reference[name] for name in seen} == seen
    assert len(seen) == (count if stage == "publishing" else 0)
    hidden = [path for path in (run.run_dir / "round-0").rglob(".*.partial")]
    assert hidden or stage == "publishing"  # what the killed worker was writing stays hidden

    run.fanout(shard)

    check_complete(run, reference, figures)


def test_leftover_temporary_files_are_not_read_as_outcomes(
    ended: tuple[RunHarness, dict[str, Any], dict[str, bytes]], figures: Any
) -> None:
    run, shard, reference = ended
    folder = run.run_dir / "round-0" / "shard-00000"
    folder.mkdir(parents=True, exist_ok=True)
    half = reference["succeeded.jsonl"][: len(reference["succeeded.jsonl"]) // 2]
    (folder / ".succeeded.jsonl.0123456789abcdef.partial").write_bytes(half)

    run.fanout(shard)

    assert Path(folder / ".succeeded.jsonl.0123456789abcdef.partial").exists()
    check_complete(run, reference, figures)
