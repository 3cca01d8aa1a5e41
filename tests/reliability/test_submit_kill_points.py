"""Invariant 2: a worker killed at any point of the submit never leads to a second batch.

Each kill is real: the submit task runs in a forked worker process that is sent ``SIGKILL`` at the
point (no ``finally``, no ``atexit``, sockets dropped by the kernel). Then the run is run again, task by
task, and the submit task once more on its own; the emulator's counters prove that every shard has
exactly one batch, and the state file names the batch the killed worker made.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_claude_batch.core.submit.state import SUBMITTED, ShardStateFile
from airflow_claude_batch.hooks import claude as claude_hook
from airflow_claude_batch.operators import submit as submit_module
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from tests.reliability.harness import RunHarness, lost_and_doubled, records

SHARDS = 2
RECORDS = 8
KILL_POINTS = ("before_intent", "after_intent", "after_create_sent", "after_response", "after_state")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _batches_created(base_url: str) -> int:
    # A client of its own: the parent's pooled connections must not be shared with a forked child.
    with httpx.Client(timeout=10.0) as client:
        return int(client.get(f"{base_url}/_emulator/stats").json()["batches_created"])


def _arm_kill(point: str, base_url: str) -> None:
    """Patch this (forked) process so that it kills itself at ``point`` of the submit."""
    state_write = ShardStateFile.write

    if point == "before_intent":

        def write(self: ShardStateFile, state: Any) -> None:
            _die()

        ShardStateFile.write = write  # type: ignore[method-assign]
    elif point == "after_state":

        def write(self: ShardStateFile, state: Any) -> None:
            state_write(self, state)
            if state.status == SUBMITTED:
                _die()

        ShardStateFile.write = write  # type: ignore[method-assign]
    elif point == "after_intent":

        def create_batch(self: Any, marker: bytes) -> Any:
            _die()

        submit_module._ShardBatchApi.create_batch = create_batch  # type: ignore[method-assign]
    elif point == "after_create_sent":
        body = claude_hook.iter_batch_body
        before = _batches_created(base_url)

        def body_then_die(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            yield from body(*args, **kwargs)
            # Every byte is on the wire: die once the API made the batch, before its answer is read.
            deadline = time.monotonic() + 20
            while _batches_created(base_url) == before and time.monotonic() < deadline:
                time.sleep(0.02)
            _die()

        claude_hook.iter_batch_body = body_then_die  # type: ignore[assignment]
    elif point == "after_response":
        create = claude_hook.ClaudeBatchHook.create_batch_from_file

        def create_then_die(self: Any, *args: Any, **kwargs: Any) -> Any:
            create(self, *args, **kwargs)
            _die()

        claude_hook.ClaudeBatchHook.create_batch_from_file = create_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(point)


def _submit_in_worker(point: str, shard: dict[str, Any], base_url: str) -> None:
    _arm_kill(point, base_url)
    # the same margin as the harness's submits: an unanswered create settles 2 s after the timeout
    ClaudeBatchSubmitOperator(task_id="submit", shard=shard, create_settle_margin=2.0).execute({})
    os._exit(0)  # the kill point was never reached


def kill_submit_at(point: str, shard: dict[str, Any], base_url: str) -> int:
    """Run the submit of ``shard`` in a forked worker killed at ``point``; return its exit code."""
    worker = multiprocessing.get_context("fork").Process(
        target=_submit_in_worker, args=(point, shard, base_url), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        worker.kill()
        worker.join()
    return int(worker.exitcode if worker.exitcode is not None else 0)


@pytest.fixture
def run(make_run: Callable[..., RunHarness]) -> RunHarness:
    return make_run(RECORDS, build_kwargs={"max_requests_per_shard": RECORDS // SHARDS})


SCENARIOS = [
    *[(point,) for point in KILL_POINTS],
    ("after_create_sent", "after_state"),
    ("before_intent", "after_response", "after_state"),
    ("after_intent", "after_create_sent", "after_state"),
]


@pytest.mark.parametrize("kills", SCENARIOS, ids=["-then-".join(kills) for kills in SCENARIOS])
def test_a_worker_killed_during_the_submit_never_makes_a_second_batch(
    kills: tuple[str, ...], run: RunHarness, faulty_emulator: Any, figures: Any
) -> None:
    shards = run.build()
    assert len(shards) == SHARDS
    for point in kills:
        assert kill_submit_at(point, shards[0], faulty_emulator.base_url) == -signal.SIGKILL, point
        figures.add("kill_points")
        figures.add("faults_injected")
    made_by_killed_workers = {batch["id"] for batch in claude_hook.ClaudeBatchHook().iter_batches()}
    # Only a kill after the create reached the API can have made a batch, and at most one.
    assert len(made_by_killed_workers) == (0 if set(kills) <= {"before_intent", "after_intent"} else 1)

    summary = run.run()  # the whole run again: the build reuses its shards
    again = ClaudeBatchSubmitOperator(task_id="submit", shard=shards[0]).execute({})  # and the task alone

    stats = faulty_emulator.stats()
    figures.double_submits(stats["batches_created"], SHARDS)
    assert stats["batches_created"] == SHARDS
    state = ShardStateFile(run.folder, 0, 0).read()
    assert state is not None
    assert state.status == SUBMITTED
    assert again["batch_id"] == state.batch_id
    assert made_by_killed_workers <= {state.batch_id}
    assert summary["batches"] == SHARDS
    assert summary["dispositions"]["succeeded"] == RECORDS
    lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
    figures.lines(len(lost), len(doubled), RECORDS)
    assert not lost
    assert not doubled
