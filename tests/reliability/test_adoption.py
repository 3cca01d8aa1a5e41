"""Invariant 7 for batches: a shard adopts a batch only with proof that it holds its own requests.

Runs share one storage root, the workspace and the ids of their records, as a backfill of one DAG or two
DAGs over the same table with other prompts do. The create answers are lost, refused or late exactly
where the case needs it (the emulator's fault board and the transport faults), and every run must end
holding its own batch: the one whose results carry its shard's marker, fanned out without error.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.compat import TaskDeferred
from airflow_claude_batch.core.submit.state import read_state
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from tests.fixtures.airflow import resume_deferred
from tests.reliability.harness import RunHarness, records, write_jsonl

RECORDS = 6


def same_ids_run(tmp_path: Path, run_id: str, policy: str, **kwargs: Any) -> RunHarness:
    """A run over the same record ids as every other run here, with its own prompt, on a shared root."""
    source = write_jsonl(tmp_path / "inputs" / f"{run_id}.jsonl", records(RECORDS))
    settings = {"max_requests_per_shard": RECORDS, "system": f"Moderation policy {policy}."}
    return RunHarness(
        storage=tmp_path / "storage",
        source=f"file://{source}",
        run_id=run_id,
        build_kwargs={**settings, **kwargs.pop("build_kwargs", {})},
        **kwargs,
    )


def batch_of(run: RunHarness, round_index: int = 0, shard_index: int = 0) -> tuple[str, str]:
    state = read_state(run.folder.shard_state(round_index, shard_index))
    assert state is not None
    assert state.status == "submitted"
    return str(state.batch_id), str(state.marker_id)


def holds(batch_id: str, marker_id: str) -> bool:
    return any(line["custom_id"] == marker_id for line in ClaudeBatchHook().iter_results(batch_id))


def finish(run: RunHarness, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Wait, fan out and report a run whose shards were submitted."""
    for shard in shards:
        run.fanout(run.wait(shard))
    return run.report()


def assert_own_batches(figures: Any, emulator: Any, *runs: RunHarness) -> None:
    batches = [batch_of(run) for run in runs]
    assert len({batch_id for batch_id, _ in batches}) == len(runs), "two runs hold one batch"
    wrong = sum(not holds(batch_id, marker_id) for batch_id, marker_id in batches)
    stats = emulator.stats()
    figures.add("adoption_cases", 1)
    figures.add("batches_adopted_wrongly", wrong)
    figures.double_submits(stats["batches_created"], len(runs))
    assert wrong == 0
    assert stats["batches_created"] == len(runs)
    assert stats["cancels"] == 0


def test_a_late_create_beside_another_runs_batch_of_the_same_ids_adopts_its_own(
    tmp_path: Path, faulty_emulator: Any, figures: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run A's create is answered after its client gave up; run B (same ids, another policy) creates its
    own batch of the same size in between. A adopts its own batch, never B's, and sends nothing twice."""
    a = same_ids_run(tmp_path, "scheduled__2026-11-01", "2026.11")
    b = same_ids_run(tmp_path, "scheduled__2027-02-01", "2027.02")
    [shard_a], [shard_b] = a.build(), b.build()
    impatient = {
        "conn_type": "claude-batch",
        "host": faulty_emulator.base_url,
        "password": faulty_emulator.api_key,
        "extra": {"timeout": 1.0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_IMPATIENT", json.dumps(impatient))
    faulty_emulator.transport.arm("create", "late", seconds=1.5)
    submitted: dict[str, Any] = {}
    a_submit = threading.Thread(
        target=lambda: submitted.update(a=a.submit(shard_a, conn_id="claude_impatient"))
    )
    a_submit.start()
    deadline = time.monotonic() + 10
    while faulty_emulator.transport.fired["create"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    submitted["b"] = b.submit(shard_b)  # lands while A's create is still unanswered
    a_submit.join(timeout=60)
    assert not a_submit.is_alive()
    assert faulty_emulator.stats()["creates_received"] == 2
    summaries = [finish(a, [submitted["a"]]), finish(b, [submitted["b"]])]
    assert [s["dispositions"]["succeeded"] for s in summaries] == [RECORDS, RECORDS]
    assert all(s["reconciled"] for s in summaries)
    assert_own_batches(figures, faulty_emulator, a, b)


def test_a_refused_create_never_adopts_the_batch_another_run_made_meanwhile(
    tmp_path: Path, faulty_emulator: Any, figures: Any
) -> None:
    """The 429 race: A's create is refused for now, B's same-size batch lands before A tries again."""
    a = same_ids_run(tmp_path, "scheduled__2026-11-01", "2026.11", retries=0)
    b = same_ids_run(tmp_path, "scheduled__2027-02-01", "2027.02")
    [shard_a], [shard_b] = a.build(), b.build()
    faulty_emulator.faults({"fail_next": {"endpoint": "create", "status": 429, "count": 1, "retry_after": 0}})
    paced = ClaudeBatchSubmitOperator(
        task_id="submit",
        shard=shard_a,
        storage_conn_id=a.storage_conn_id,
        recheck_interval=a.poll_interval,
        create_settle_margin=a.create_settle_margin,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        paced.execute(a.context())  # refused for now: A waits in the triggerer, it does not fail
    refused = read_state(a.folder.shard_state(0, 0))
    assert refused is not None
    assert (refused.status, refused.refusals) == ("failed", 1)
    submitted_b = b.submit(shard_b)
    submitted_a = resume_deferred(paced, a.context(), deferred.value)  # A tries again
    assert faulty_emulator.stats()["creates_received"] == 3
    assert submitted_a["batch_id"] != submitted_b["batch_id"]
    assert submitted_a["marker_id"] != refused.marker_id, "the refused attempt's marker is in no batch"
    finish(a, [submitted_a])
    finish(b, [submitted_b])
    assert_own_batches(figures, faulty_emulator, a, b)


def test_lost_answers_of_two_runs_with_batches_of_one_size_end_each_with_its_own(
    tmp_path: Path, faulty_emulator: Any, figures: Any
) -> None:
    """Both creates make their batch and lose the answer: neither batch is claimed, both are proven by
    their markers once they end."""
    a = same_ids_run(tmp_path, "scheduled__2026-11-01", "2026.11")
    b = same_ids_run(tmp_path, "scheduled__2027-02-01", "2027.02")
    [shard_a], [shard_b] = a.build(), b.build()
    faulty_emulator.faults({"lose_next_create_response": 2, "mode": "drop"})
    submitted_b = b.submit(shard_b)
    submitted_a = a.submit(shard_a)
    assert faulty_emulator.stats()["creates_received"] == 2
    finish(a, [submitted_a])
    finish(b, [submitted_b])
    assert_own_batches(figures, faulty_emulator, a, b)


def test_two_same_size_shards_of_one_run_both_losing_their_answer_are_not_stuck(
    tmp_path: Path, faulty_emulator: Any, figures: Any
) -> None:
    run = same_ids_run(tmp_path, "manual__2026-12-01", "2026.11", build_kwargs={"max_requests_per_shard": 3})
    shards = run.build()
    assert [shard["request_count"] for shard in shards] == [3, 3]
    faulty_emulator.faults({"lose_next_create_response": 2, "mode": "drop"})
    submitted = [run.submit(shard) for shard in shards]
    summary = finish(run, submitted)
    assert summary["reconciled"]
    assert summary["dispositions"]["succeeded"] == RECORDS
    batches = [batch_of(run, 0, index) for index in range(2)]
    assert len({batch_id for batch_id, _ in batches}) == 2
    assert all(holds(batch_id, marker) for batch_id, marker in batches)
    figures.add("adoption_cases", 1)
    figures.double_submits(faulty_emulator.stats()["batches_created"], 2)
    assert faulty_emulator.stats()["batches_created"] == 2


def test_the_fanout_refuses_a_batch_that_does_not_hold_the_shards_marker(
    tmp_path: Path, faulty_emulator: Any
) -> None:
    """A state file edited by hand to another run's batch: nothing of the wrong answers is written."""
    a = same_ids_run(tmp_path, "scheduled__2026-11-01", "2026.11")
    b = same_ids_run(tmp_path, "scheduled__2027-02-01", "2027.02")
    [shard_a], [shard_b] = a.build(), b.build()
    submitted_a, submitted_b = a.submit(shard_a), b.submit(shard_b)
    wrong = {**b.wait(submitted_b), "marker_id": submitted_a["marker_id"]}
    with pytest.raises(Exception, match="do not hold the shard's marker request"):
        b.fanout(wrong)
    assert not b.folder.shard_outcome(0, 0, "succeeded").exists()  # type: ignore[attr-defined]
    finish(a, [submitted_a])
