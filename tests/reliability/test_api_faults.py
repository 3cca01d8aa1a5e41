"""Invariants 2 and 3 under API faults: 429 with retry-after, 500, 529, connection resets and slow answers
on every endpoint a run calls (count_tokens, list, create, retrieve, results), during the build, the
submit, the polling and the results download.

Each faulted run must end as a clean run of the same records does (same dispositions, same answer for
every record, same flat output), with one batch per shard and no cancel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_claude_batch.core.submit import pacing
from tests.fixtures.emulator import DEFAULT_CONN_ENV
from tests.reliability.harness import RunHarness, comparable, lost_and_doubled, records

RECORDS = 8
SHARDS = 2
#: The endpoints a run calls (cancel and delete are never called by a healthy run).
RUN_ENDPOINTS = ("count_tokens", "list", "create", "retrieve", "results")
STATUS_FAULTS = {"429": (429, 0.2), "500": (500, None), "529": (529, None)}
FAULT_KINDS = (*STATUS_FAULTS, "reset", "slow")
_CLEAN: dict[str, Any] = {}


def clean_outcome(make_run: Callable[..., RunHarness], emulator: Any) -> dict[str, Any]:
    """What a clean run of the records gives (computed once per session, before any fault is armed)."""
    if not _CLEAN:
        run = make_run(RECORDS, name="clean")
        _CLEAN.update(comparable(run, run.run()))
        assert _CLEAN["dispositions"]["succeeded"] == RECORDS
        emulator.handle.reset()  # the faulted run counts its own batches
    return _CLEAN


def arm(emulator: Any, kind: str, endpoint: str, count: int) -> None:
    """Arm ``count`` faults of ``kind`` on ``endpoint``."""
    if kind in STATUS_FAULTS:
        status, retry_after = STATUS_FAULTS[kind]
        emulator.faults(
            {
                "fail_next": {
                    "endpoint": endpoint,
                    "status": status,
                    "count": count,
                    "retry_after": retry_after,
                }
            }
        )
    elif kind == "reset":
        # Results are cut in the middle of a line; other answers right after their headers.
        emulator.transport.arm(
            endpoint, "reset", count=count, after_bytes=300 if endpoint == "results" else 0
        )
    else:
        emulator.transport.arm(endpoint, "slow", count=count, seconds=0.4)


def check_run(
    run: RunHarness, summary: dict[str, Any], emulator: Any, clean: dict[str, Any], figures: Any
) -> None:
    stats = emulator.stats()
    figures.double_submits(stats["batches_created"], SHARDS)
    lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
    figures.lines(len(lost), len(doubled), RECORDS)
    assert comparable(run, summary) == clean
    assert stats["batches_created"] == SHARDS
    assert stats["cancels"] == 0
    assert not lost
    assert not doubled


@pytest.fixture(autouse=True)
def short_pacing_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 529 without retry-after backs off from 30 s; the faults here fire twice, so make it short."""
    monkeypatch.setattr(pacing, "BACKOFF_BASE", timedelta(seconds=0.2))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_faults_on_every_endpoint_change_nothing_but_the_time_taken(
    kind: str, make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    clean = clean_outcome(make_run, faulty_emulator)
    faulty_emulator.faults({"processing_seconds": 0.3})  # so that polls happen while batches run
    for endpoint in RUN_ENDPOINTS:
        arm(faulty_emulator, kind, endpoint, count=2)
    run = make_run(RECORDS, name=f"faulted-{kind}")

    summary = run.run()

    fired = faulty_emulator.faults_fired
    figures.add("faults_injected", fired)
    # Every endpoint met its faults: two each (a refused create is tried again, by the task's retry
    # after a 500, by the submit's own paced wait after a 429 or 529).
    assert fired == 2 * len(RUN_ENDPOINTS)
    check_run(run, summary, faulty_emulator, clean, figures)
    if kind in STATUS_FAULTS:
        # A refused create made no batch and was sent again, never by the SDK; only a 500 fails the try.
        assert faulty_emulator.stats()["creates_received"] == SHARDS + 2
        failed_tries = 2 if kind == "500" else 0
        assert sum(error.startswith("submit:") for error in run.attempts.errors) == failed_tries


def test_a_storm_of_every_fault_on_every_endpoint_with_a_deferred_wait(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    clean = clean_outcome(make_run, faulty_emulator)
    faulty_emulator.faults({"processing_seconds": 0.4})
    for kind in FAULT_KINDS:
        for endpoint in RUN_ENDPOINTS:
            arm(faulty_emulator, kind, endpoint, count=1)
    faulty_emulator.faults({"lose_next_create_response": 1, "mode": "drop"})
    run = make_run(RECORDS, name="storm", deferrable=True, retries=8)

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    check_run(run, summary, faulty_emulator, clean, figures)


def test_reads_slower_than_the_connection_timeout_are_retried(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """count_tokens, polls and the results download time out once each, and are read again."""
    clean = clean_outcome(make_run, faulty_emulator)
    impatient = json.dumps(
        {
            "conn_type": "claude-batch",
            "host": faulty_emulator.base_url,
            "password": faulty_emulator.api_key,
            "extra": {"timeout": 1.0},
        }
    )
    patient = faulty_emulator.handle.connection_json

    def connection_for(task: str) -> None:
        # The create keeps the patient connection: this test is about reads (see the next test).
        monkeypatch.setenv(DEFAULT_CONN_ENV, patient if task == "submit" else impatient)

    for endpoint in ("count_tokens", "retrieve", "results"):
        faulty_emulator.transport.arm(endpoint, "slow", seconds=1.6)
    run = make_run(RECORDS, name="timeouts", before_task=connection_for)

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    assert faulty_emulator.transport.total_fired == 3
    check_run(run, summary, faulty_emulator, clean, figures)


def test_a_create_answered_after_the_client_gave_up_is_adopted_not_sent_again(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API finishes a create whose client timed out: the submit finds that batch by listing."""
    clean = clean_outcome(make_run, faulty_emulator)
    submits = 0

    def impatient_first_submit(task: str) -> None:
        nonlocal submits
        submits += task == "submit"
        timeout = {"timeout": 1.0} if task == "submit" and submits == 1 else {}
        connection = {
            "conn_type": "claude-batch",
            "host": faulty_emulator.base_url,
            "password": faulty_emulator.api_key,
            "extra": timeout,
        }
        monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps(connection))

    faulty_emulator.transport.arm("create", "late", seconds=1.5)  # the client gives up after 1 s
    # A retry comes after the API finished, as Airflow's retry_delay (minutes) makes it.
    run = make_run(RECORDS, name="late-create", retry_delay=1.0, before_task=impatient_first_submit)

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    assert faulty_emulator.transport.total_fired == 1
    assert faulty_emulator.stats()["creates_received"] == SHARDS  # the late create was never sent again
    check_run(run, summary, faulty_emulator, clean, figures)
