"""Faults at submit: a gateway's answers that prove nothing, two submits of one shard at once, an API
clock hours away from the worker's, and candidate results read short or not found.

Each run must end with exactly one batch per shard and every record answered once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.submit.state import SUBMITTED, ShardStateFile, read_state
from airflow_claude_batch.emulator import EmulatorServer
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from tests.fixtures.emulator import DEFAULT_CONN_ENV, FAST_CONFIG, EmulatorHandle
from tests.reliability.conftest import FAULT_SUITE_TIMEOUT
from tests.reliability.harness import RunHarness, lost_and_doubled, records, write_jsonl

RECORDS = 8
SHARDS = 2


def check_paid_once(run: RunHarness, summary: dict[str, Any], stats: dict[str, Any], figures: Any) -> None:
    """One batch per shard, every record answered once (its rows read when the run folder is local)."""
    figures.double_submits(stats["batches_created"], SHARDS)
    assert stats["batches_created"] == SHARDS
    assert summary["dispositions"]["succeeded"] == RECORDS
    if run.storage_root is None:
        lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
        figures.lines(len(lost), len(doubled), RECORDS)
        assert not lost
        assert not doubled


# --- answers that prove nothing ------------------------------------------------------------------


GATEWAY_ANSWERS = [(504, "html"), (502, "html"), (503, "html"), (500, "api"), (408, "html"), (403, "html")]


@pytest.mark.parametrize(("status", "body"), GATEWAY_ANSWERS, ids=[f"{s}-{b}" for s, b in GATEWAY_ANSWERS])
def test_a_gateway_answer_whose_create_lands_2s_later_is_not_created_twice(
    status: int, body: str, make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    """The gateway answers at once; the create reaches the API 2 s later and makes its batch."""
    faulty_emulator.transport.arm("create", "answer", status=status, body=body, seconds=2.0)
    run = make_run(RECORDS, name=f"gateway-{status}")

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    stats = faulty_emulator.stats()
    assert faulty_emulator.transport.total_fired == 1
    assert stats["creates_received"] == SHARDS  # the landed create was adopted, never sent again
    check_paid_once(run, summary, stats, figures)


def test_a_gateway_504_that_passed_nothing_on_is_sent_again_only_after_it_settles(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    faulty_emulator.transport.arm("create", "answer", status=504, body="html", seconds=None)
    run = make_run(RECORDS, name="gateway-nothing")
    started = time.monotonic()

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    # no second create before the connection's timeout and the margin after the first
    assert time.monotonic() - started >= FAULT_SUITE_TIMEOUT + run.create_settle_margin
    state = ShardStateFile(run.folder, 0, 0).read()
    assert state is not None
    assert len(state.earlier_markers) == 1  # the unanswered attempt's marker is still looked for
    check_paid_once(run, summary, faulty_emulator.stats(), figures)


def test_the_apis_own_refusal_ends_the_attempt_at_once(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    """A 400 with the API's error body is a definite refusal: recorded failed, nothing looked for."""
    faulty_emulator.transport.arm("create", "answer", status=400, body="api", seconds=None)
    run = make_run(RECORDS, name="refused")
    [first, _] = run.build()
    with pytest.raises(AirflowFailException, match="the API refused to create a batch"):
        ClaudeBatchSubmitOperator(task_id="submit", shard=first).execute({})
    figures.add("faults_injected")
    state = ShardStateFile(run.folder, 0, 0).read()
    assert state is not None
    assert (state.status, state.retry_at) == ("failed", None)
    assert faulty_emulator.stats()["creates_received"] == 0


# --- two submits of one shard at the same moment -------------------------------------------------


def _submit_in_process(shard: dict[str, Any], storage_conn_id: str | None, start: Any, out: Any) -> None:
    try:
        from airflow.sdk.io import store

        # A worker process builds its own filesystems: the parent's (its asyncio loop) are not fork-safe.
        store._STORE_CACHE.clear()
        start.wait(timeout=30)
        result = ClaudeBatchSubmitOperator(
            task_id="submit", shard=shard, storage_conn_id=storage_conn_id, create_settle_margin=2.0
        ).execute({})
        out.put(("ok", result["batch_id"]))
    except BaseException as exc:  # reported to the test, whatever it is
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(0)


def submit_at_once(shard: dict[str, Any], storage_conn_id: str | None, processes: int = 2) -> list[Any]:
    """Run the submit of ``shard`` in ``processes`` forked workers released at the same moment."""
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(processes), context.SimpleQueue()  # written at once: the workers _exit
    workers = [
        context.Process(target=_submit_in_process, args=(shard, storage_conn_id, start, out), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "a submit did not finish in 2 minutes"
    return [out.get() for _ in workers if not out.empty()]


@pytest.fixture
def s3_run(tmp_path: Path, s3: Any) -> RunHarness:
    source = write_jsonl(tmp_path / "in" / "tickets.jsonl", records(RECORDS))
    return RunHarness(
        storage=tmp_path / "unused",
        source=f"file://{source}",
        storage_root="s3://claude-runs/runs",
        storage_conn_id="aws_default",
        build_kwargs={"max_requests_per_shard": RECORDS // SHARDS},
    )


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_two_submits_of_one_shard_at_the_same_moment_create_once_and_hold_the_same_batch(
    storage: str, make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any, request: Any
) -> None:
    run = request.getfixturevalue("s3_run") if storage == "s3" else make_run(RECORDS, name="race")
    shards = run.build()
    # Both read "no state" and list before either writes its intent: the storage decides.
    faulty_emulator.transport.arm("list", "slow", count=2, seconds=0.5)

    answers = submit_at_once(shards[0], run.storage_conn_id)

    figures.add("faults_injected", faulty_emulator.faults_fired)
    assert [kind for kind, _ in answers] == ["ok", "ok"], answers
    assert answers[0][1] == answers[1][1]
    stats = faulty_emulator.stats()
    assert (stats["creates_received"], stats["batches_created"]) == (1, 1)
    summary = run.run()  # the rest of the run: the shard re-attaches, the other is created
    check_paid_once(run, summary, faulty_emulator.stats(), figures)
    assert summary["batches"] == SHARDS


def test_a_storage_without_conditional_writes_is_refused_unless_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upath import UPath

    from airflow_claude_batch.core.run.conditional_writes import create_only
    from airflow_claude_batch.exceptions import ConditionalWritesUnsupportedError

    path = UPath(f"memory://{tmp_path.name}/state.json")
    with pytest.raises(ConditionalWritesUnsupportedError, match=r"memory://.*allow_unconditional_writes"):
        create_only(path, b"{}")
    create_only(path, b"{}", allow_unconditional=True)
    assert path.read_bytes() == b"{}"


# --- an API clock far from the worker's ----------------------------------------------------------


@pytest.fixture(params=[-3 * 3600.0, 5 * 3600.0], ids=["api-3h-behind", "api-5h-ahead"])
def skewed_emulator(request: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    offset = float(request.param)
    server = EmulatorServer(FAST_CONFIG, clock=lambda: time.time() + offset).start()
    handle = EmulatorHandle(base_url=server.base_url)
    connection = {**json.loads(handle.connection_json), "extra": {"timeout": FAULT_SUITE_TIMEOUT}}
    monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps(connection))
    try:
        yield handle
    finally:
        handle.client.close()
        server.stop()


def test_a_lost_create_is_found_whatever_the_apis_clock_says(
    skewed_emulator: EmulatorHandle, make_run: Callable[..., RunHarness], figures: Any
) -> None:
    skewed_emulator.faults({"lose_next_create_response": 1, "mode": "drop"})
    run = make_run(RECORDS, name="skew")

    summary = run.run()

    figures.add("faults_injected")
    stats = skewed_emulator.stats()
    assert stats["creates_received"] == SHARDS
    check_paid_once(run, summary, stats, figures)


# --- candidate results read short or not found ---------------------------------------------------


@pytest.mark.parametrize("lines", [0, 1])
def test_a_short_read_of_a_lost_creates_batch_is_read_again_not_taken_as_another_s(
    lines: int, make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    """The recovery's read of the candidate's results stops after ``lines`` lines (before the marker
    when it is 0; the marker may come first otherwise): it is read again, never taken as proof."""
    faulty_emulator.faults({"lose_next_create_response": 1, "mode": "drop", "cut_results_after_lines": lines})
    run = make_run(RECORDS, name="short-read")

    summary = run.run()

    figures.add("faults_injected", 2)
    stats = faulty_emulator.stats()
    assert stats["creates_received"] == SHARDS
    state = read_state(run.folder.shard_state(0, 0))
    assert state is not None
    assert (state.status, state.not_ours) == (SUBMITTED, ())
    # the fanouts' downloads, the recovery's cut one, and its read again when the cut came first
    assert stats["results_downloads"] >= SHARDS + (2 if lines == 0 else 1)
    check_paid_once(run, summary, stats, figures)


def test_results_not_found_for_a_lost_creates_ended_batch_are_waited_for(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    """Results that lag the batch's status answer 404 for a while: read again, then adopted."""
    faulty_emulator.faults({"lose_next_create_response": 1, "mode": "drop"})
    faulty_emulator.transport.arm("results", "answer", count=2, status=404, body="api", seconds=None)
    run = make_run(RECORDS, name="results-404")

    summary = run.run()

    figures.add("faults_injected", faulty_emulator.faults_fired)
    assert faulty_emulator.transport.fired["results:answer"] == 2
    stats = faulty_emulator.stats()
    assert stats["creates_received"] == SHARDS
    check_paid_once(run, summary, stats, figures)


def test_a_batch_404_right_after_its_create_is_read_again(faulty_emulator: Any) -> None:
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook()
    created = hook.create_batch(
        [
            {
                "custom_id": "a",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    faulty_emulator.transport.arm("retrieve", "answer", count=2, status=404, body="api", seconds=None)
    assert hook.get_batch(created["id"])["id"] == created["id"]
    assert faulty_emulator.transport.fired["retrieve:answer"] == 2


def test_the_waits_first_read_of_a_new_batch_answering_404_is_read_again(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    run = make_run(RECORDS, name="wait-404")
    [first, _] = run.build()
    submitted = run.submit(first)
    faulty_emulator.transport.arm("retrieve", "answer", count=2, status=404, body="api", seconds=None)
    ended = run.wait(submitted)
    figures.add("faults_injected", 2)
    assert ended["batch_id"] == submitted["batch_id"]
    assert faulty_emulator.transport.fired["retrieve:answer"] == 2
    assert run.attempts.retries == 0
