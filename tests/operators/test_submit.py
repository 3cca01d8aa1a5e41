"""The submit operator against the emulator: lost answers, failed creates and reruns never pay twice."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.submit.state import read_state
from airflow_claude_batch.exceptions import AfterSubmitError
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from tests.fixtures.airflow import resume_deferred
from tests.fixtures.emulator import DEFAULT_CONN_ENV


def write_shards(storage: str, run_id: str, shards: int, requests_per_shard: int) -> list[dict[str, Any]]:
    """Write a round's shard files as the build would, all of the same size; return their descriptors."""
    folder = RunFolder.for_run(ObjectStoragePath(storage), "submit_dag", run_id, "claude_batch")
    descriptors = []
    for index in range(shards):
        lines = [
            orjson.dumps(
                {
                    "custom_id": f"s{index}-r{number}",
                    "params": {
                        "model": "claude-haiku-4-5",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"ticket {number} of shard {index}"}],
                    },
                }
            )
            for number in range(requests_per_shard)
        ]
        path = folder.shard_requests(0, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        descriptors.append(
            ShardDescriptor(
                run_uri=str(folder.root),
                round=0,
                index=index,
                uri=str(path),
                request_count=requests_per_shard,
                body_bytes=batch_body_size(sum(map(len, lines)), requests_per_shard),
            ).to_dict()
        )
    return descriptors


def submit(shard: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Run the submit as a worker does (waits in the worker, looking again every 0.1 s)."""
    kwargs = {"recheck_interval": 0.1, "create_settle_margin": 1.0, "deferrable": False, **kwargs}
    return ClaudeBatchSubmitOperator(task_id="submit", shard=shard, **kwargs).execute(context={})


def state_of(shard: dict[str, Any]) -> Any:
    descriptor = ShardDescriptor.from_dict(shard)
    folder = RunFolder(ObjectStoragePath(descriptor.run_uri))
    return read_state(folder.shard_state(descriptor.round, descriptor.index))


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"file://{tmp_path}/runs"


def test_submit_returns_the_descriptor_with_its_batch_and_a_rerun_reattaches(
    emulator: Any, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=40)
    caplog.set_level("INFO")
    first = submit(shard)
    assert first == {**shard, "batch_id": first["batch_id"], "marker_id": first["marker_id"]}
    assert first["marker_id"].startswith("acb-marker-")
    again = submit(shard)
    assert again == first
    stats = emulator.stats()
    assert stats["batches_created"] == 1
    assert stats["creates_received"] == 1
    state = state_of(shard)
    assert state.status == "submitted"
    assert state.batch_id == first["batch_id"]
    assert state.marker_id == first["marker_id"]
    batch = ClaudeBatchHook().get_batch(first["batch_id"])
    assert sum(batch["request_counts"].values()) == 41  # the shard's 40 and its marker
    assert first["batch_id"] in caplog.text
    assert "ticket 3 of shard 0" not in caplog.text  # requests are never logged


@pytest.mark.parametrize("mode", ["error", "drop"])
def test_a_lost_create_answer_is_recovered_without_a_second_batch(
    emulator: Any, storage: str, mode: str
) -> None:
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=25)
    emulator.faults({"lose_next_create_response": 1, "mode": mode})
    result = submit(shard)
    stats = emulator.stats()
    assert stats["batches_created"] == 1
    assert stats["creates_received"] == 1
    [only] = list(ClaudeBatchHook().iter_batches())
    assert result["batch_id"] == only["id"]
    assert state_of(shard).batch_id == only["id"]
    assert submit(shard)["batch_id"] == only["id"]
    assert emulator.stats()["batches_created"] == 1


def test_a_create_answered_with_a_server_error_keeps_its_intent_until_it_settles(
    emulator: Any, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 proves nothing: the retry sends nothing before the create can no longer land."""
    connection = {**json.loads(emulator.connection_json), "extra": {"timeout": 2.0}}
    monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps(connection))
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=10)
    emulator.faults({"fail_next": {"endpoint": "create", "status": 500, "count": 1}})
    with pytest.raises(AfterSubmitError, match="no batch for it is listed yet; the intent is kept"):
        submit(shard)
    assert emulator.stats()["creates_received"] == 1
    intent = state_of(shard)
    assert intent.status == "intent"
    result = submit(shard)  # the task's retry: waits until settle_at (2 s + 1 s after the intent)
    assert time.time() >= intent.intent_time.timestamp() + 3.0
    stats = emulator.stats()
    assert (stats["creates_received"], stats["batches_created"]) == (2, 1)
    state = state_of(shard)
    assert state.batch_id == result["batch_id"]
    assert state.earlier_markers == (intent.marker_id,)


@pytest.mark.parametrize(("status", "error"), [(429, "rate_limit_error"), (529, "overloaded_error")])
def test_a_create_refused_for_now_waits_and_is_sent_again_without_failing(
    emulator: Any, storage: str, status: int, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=10)
    emulator.faults({"fail_next": {"endpoint": "create", "status": status, "count": 2, "retry_after": 0.2}})
    caplog.set_level("INFO")
    started = time.monotonic()
    result = submit(shard)
    assert time.monotonic() - started >= 0.2, "the retry-after was waited for"
    stats = emulator.stats()
    assert (stats["creates_received"], stats["batches_created"]) == (3, 1)
    state = state_of(shard)
    assert (state.status, state.batch_id, state.refusals) == ("submitted", result["batch_id"], 2)
    assert holds_marker(result["batch_id"], result["marker_id"])
    assert f"waits for capacity: the API has no capacity for it now (HTTP {status} {error}" in caplog.text
    assert "next try at" in caplog.text
    assert "ticket 1 of shard 0" not in caplog.text


def test_a_deferred_wait_for_capacity_frees_the_worker_and_fails_only_at_its_deadline(
    make_emulator: Any, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    from airflow_claude_batch.compat import TaskDeferred

    full = make_emulator(queue_limit=15, queue_retry_after=30, speed=0.1)
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", full.connection_json)
    first, second = write_shards(storage, "run-1", shards=2, requests_per_shard=10)
    submit(first)  # 11 of the 15 requests the queue holds are waiting: at 0.1 a second they stay
    operator = ClaudeBatchSubmitOperator(
        task_id="submit", shard=second, recheck_interval=0.1, pacing_timeout=60.0, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context={})
    assert isinstance(deferred.value.trigger, DateTimeTrigger)
    assert deferred.value.method_name == "execute_complete"
    since = deferred.value.kwargs["pacing_since"]
    assert since is not None
    state = state_of(second)
    assert (state.status, state.refusals) == ("failed", 1)
    assert "queue would exceed your limit" in state.failure
    # Resumed by the triggerer while still within its deadline: it waits again, sending nothing early.
    with pytest.raises(TaskDeferred) as again:
        operator.execute_complete(context={}, pacing_since=since)
    assert again.value.kwargs["pacing_since"] == since
    # Resumed after its deadline: the task fails for good, saying what to do.
    with pytest.raises(AirflowFailException, match=r"waited 0:01:00 for the API's capacity.*pacing_timeout"):
        operator.execute_complete(context={}, pacing_since="2026-01-01T00:00:00.000000Z")
    stats = full.stats()
    assert (stats["creates_received"], stats["batches_created"]) == (2, 1)


def test_a_shard_never_jumps_ahead_of_a_lower_shard_waiting_for_capacity(
    make_emulator: Any, storage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue holds one shard at a time. Shard 1 is refused and waits; shard 2 comes while it waits
    and waits behind it, even once capacity has freed, until shard 1 has its batch."""
    from airflow_claude_batch.compat import TaskDeferred

    full = make_emulator(queue_limit=15, queue_retry_after=1, speed=5.0)  # 11 requests end in ~2 s
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", full.connection_json)
    shards = write_shards(storage, "run-1", shards=3, requests_per_shard=10)
    first = submit(shards[0])
    paced = [
        ClaudeBatchSubmitOperator(task_id="submit", shard=shard, recheck_interval=0.1, deferrable=True)
        for shard in shards
    ]
    caplog.set_level("INFO")
    with pytest.raises(TaskDeferred) as one:
        paced[1].execute(context={})  # refused: the queue is full
    with pytest.raises(TaskDeferred) as two:
        paced[2].execute(context={})  # sends nothing: shard 1 is ahead of it
    assert full.stats()["creates_received"] == 2
    assert state_of(shards[2]) is None
    assert "shards are sent in order: shard 1 of round 0 waits for capacity" in caplog.text
    while ClaudeBatchHook().get_batch(first["batch_id"])["processing_status"] != "ended":
        time.sleep(0.2)
    # Capacity has freed, but shard 1 has not tried yet: shard 2, resumed first, still waits.
    with pytest.raises(TaskDeferred) as still:
        paced[2].execute_complete(context={}, **two.value.kwargs)
    assert full.stats()["creates_received"] == 2
    second = resume_deferred(paced[1], {}, one.value)
    third = resume_deferred(paced[2], {}, still.value)
    stats = full.stats()
    assert stats["batches_created"] == 3
    results = [first, second, third]
    assert len({result["batch_id"] for result in results}) == 3
    created = [ClaudeBatchHook().get_batch(result["batch_id"])["created_at"] for result in results]
    assert created == sorted(created), "the batches were made in shard order"
    while ClaudeBatchHook().get_batch(third["batch_id"])["processing_status"] != "ended":
        time.sleep(0.2)
    for shard, result in zip(shards, results, strict=True):
        assert state_of(shard).batch_id == result["batch_id"]
        assert holds_marker(result["batch_id"], result["marker_id"])


def test_shards_of_one_size_with_lost_answers_get_one_batch_each(emulator: Any, storage: str) -> None:
    shards = write_shards(storage, "run-1", shards=3, requests_per_shard=20)
    emulator.faults({"lose_next_create_response": 3, "mode": "drop"})
    ids = [submit(shard)["batch_id"] for shard in shards]
    assert len(set(ids)) == 3
    assert emulator.stats()["batches_created"] == 3
    assert all(
        holds_marker(batch_id, state_of(shard).marker_id) for batch_id, shard in zip(ids, shards, strict=True)
    )
    assert [submit(shard)["batch_id"] for shard in shards] == ids


@pytest.mark.parametrize("lost", [1, 2])
def test_shards_submitted_at_once_with_lost_answers_never_pay_twice(
    emulator: Any, storage: str, lost: int
) -> None:
    shards = write_shards(storage, "run-1", shards=4, requests_per_shard=20)
    emulator.faults({"lose_next_create_response": lost, "mode": "drop"})
    results: dict[int, Any] = {}

    def attempt(index: int) -> None:
        for _ in range(5):  # the task's retries, with a short retry delay
            try:
                results[index] = submit(shards[index])["batch_id"]
                return
            except AfterSubmitError as exc:
                results[index] = exc
                time.sleep(0.3)

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert emulator.stats()["batches_created"] == 4
    # Shards of one size that lost their answers at once wait for the candidates to end and each finds
    # the batch holding its own marker: none stops, none pays twice, none takes another's.
    assert sorted(results) == [0, 1, 2, 3]
    assert all(isinstance(value, str) for value in results.values()), results
    assert len(set(results.values())) == 4
    for index, shard in enumerate(shards):
        assert state_of(shard).batch_id == results[index]
        assert holds_marker(results[index], state_of(shard).marker_id)


def holds_marker(batch_id: str, marker_id: str) -> bool:
    return any(line["custom_id"] == marker_id for line in ClaudeBatchHook().iter_results(batch_id))


def test_a_rejected_key_fails_the_task_without_retry(emulator: Any, storage: str, monkeypatch: Any) -> None:
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=5)
    wrong = {"conn_type": "claude-batch", "host": emulator.base_url, "password": "sk-ant-wrong-key-123"}
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_WRONG", json.dumps(wrong))
    with pytest.raises(AirflowFailException, match="'claude_wrong' was rejected") as raised:
        submit(shard, conn_id="claude_wrong")
    assert "sk-ant-wrong-key-123" not in str(raised.value)
    assert emulator.stats()["batches_created"] == 0


def test_a_shard_that_changed_since_the_build_is_not_sent(emulator: Any, storage: str) -> None:
    [shard] = write_shards(storage, "run-1", shards=1, requests_per_shard=5)
    with pytest.raises(AirflowFailException, match=r"holds 5 requests"):
        submit({**shard, "request_count": 6})
    assert emulator.stats()["creates_received"] == 0


DAG_SOURCE = """
import json
import pathlib
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from tests.fixtures.airflow import resume_deferred
from tests.fixtures.emulator import DEFAULT_CONN_ENV
from tests.operators.test_submit import write_shards

with DAG("submit_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

    @task
    def build():
        return write_shards({storage!r}, get_current_context()["run_id"], shards=3, requests_per_shard=30)

    submitted = ClaudeBatchSubmitOperator.partial(
        task_id="submit", retries=3, retry_delay=timedelta(seconds=0), create_settle_margin=1.0
    ).expand(shard=build())

    @task
    def keep(descriptors):
        pathlib.Path({out!r}).write_text(json.dumps(list(descriptors)))

    keep(submitted.output)
"""


@pytest.mark.airflow
def test_a_dag_run_with_failed_and_lost_creates_submits_each_shard_once(
    run_dag: Any, emulator: Any, tmp_path: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 500 proves nothing: its retry sends again only after the timeout (2 s) and the margin (1 s).
    monkeypatch.setenv(
        DEFAULT_CONN_ENV, json.dumps({**json.loads(emulator.connection_json), "extra": {"timeout": 2.0}})
    )
    out = tmp_path / "submitted.json"
    dag_file = tmp_path / "submit_dag.py"
    dag_file.write_text(DAG_SOURCE.format(storage=storage, out=str(out)))
    emulator.faults(
        {
            "fail_next": {"endpoint": "create", "status": 500, "count": 1},
            "lose_next_create_response": 1,
            "mode": "drop",
        }
    )
    dag_run = run_dag(dag_file, "submit_dag")
    assert dag_run.state == "success"
    descriptors = json.loads(out.read_text())
    assert sorted(d["index"] for d in descriptors) == [0, 1, 2]
    ids = {d["batch_id"] for d in descriptors}
    assert len(ids) == 3
    stats = emulator.stats()
    assert stats["batches_created"] == 3
    assert (
        stats["creates_received"] == 4
    )  # the 500 made no batch (sent again once settled); the lost answer was found again
    assert ids == {batch["id"] for batch in ClaudeBatchHook().iter_batches()}
    for descriptor in descriptors:
        assert state_of(descriptor).batch_id == descriptor["batch_id"]
