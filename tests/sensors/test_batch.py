"""The sensor against the emulator: poke and reschedule from the worker, and deferred for real."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anthropic
import pytest
from structlog.testing import capture_logs

from airflow_claude_batch.compat import AirflowFailException, AirflowRescheduleException, TaskDeferred
from airflow_claude_batch.core.api.headers import parse_timestamp
from airflow_claude_batch.exceptions import BatchDeadlineError, BatchNotFoundError
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.triggers.emulator_batches import create_batch, wait_until_ended

FAST = 0.05


def descriptor(batch_id: str, request_count: int = 3) -> dict[str, Any]:
    return {
        "run_uri": "file:///tmp/runs/nightly/manual__2027-01-15",
        "round": 0,
        "index": 2,
        "uri": "file:///tmp/runs/nightly/manual__2027-01-15/round-0/shard-00002.requests.jsonl",
        "request_count": request_count,
        "body_bytes": 1234,
        "estimated_cost_usd": 0.01,
        "batch_id": batch_id,
        "request_counts": {},
        "processing_status": None,
        "outcome_counts": {},
        "tokens": {},
        "cost_usd": None,
        "schema_version": 1,
    }


def sensor(batch_id: str, **kwargs: Any) -> ClaudeBatchSensor:
    kwargs.setdefault("poll_interval", FAST)
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("mode", "poke")
    return ClaudeBatchSensor(task_id="wait", shard=descriptor(batch_id), **kwargs)


# --- from the worker ---------------------------------------------------------------------------------


def test_poke_mode_waits_out_errors_and_returns_the_descriptor_with_counts(emulator) -> None:
    emulator.faults({"processing_seconds": 0.4})
    batch_id = create_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 500, "count": 2}})

    result = sensor(batch_id, mode="poke").execute(context={})

    assert result == {
        **descriptor(batch_id),
        "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0},
    }
    stats = emulator.stats()
    assert stats["faults_fired"] == 2
    assert stats["cancels"] == 0


def test_reschedule_mode_frees_the_slot_until_the_batch_ended(emulator) -> None:
    emulator.faults({"processing_seconds": 2.0})
    batch_id = create_batch(emulator)
    task = sensor(batch_id, mode="reschedule", poll_interval=0.2)

    before = datetime.now(timezone.utc)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        task.execute(context={})
    assert rescheduled.value.reschedule_date > before
    assert emulator.stats()["retrieves"] == 1  # one poll per run: no sleeping in the worker

    wait_until_ended(emulator, batch_id)
    result = task.execute(context={})
    assert result["processing_status"] == "ended"
    assert result["request_counts"]["succeeded"] == 3


def test_a_wait_from_the_worker_frees_its_slot_unless_poke_mode_is_asked_for() -> None:
    assert ClaudeBatchSensor(task_id="wait", batch_id="msgbatch_1", deferrable=False).mode == "reschedule"
    poke = ClaudeBatchSensor(task_id="wait", batch_id="msgbatch_1", deferrable=False, mode="poke")
    assert poke.mode == "poke"
    assert ClaudeBatchSensor(task_id="wait", batch_id="msgbatch_1", deferrable=True).mode == "poke"


def test_the_marker_request_is_explained_once_per_wait(emulator) -> None:
    emulator.faults({"processing_seconds": 2.0})
    batch_id = create_batch(emulator)
    shard = {**descriptor(batch_id), "marker_id": "acb-marker-0123"}
    task = ClaudeBatchSensor(
        task_id="wait", shard=shard, deferrable=False, mode="reschedule", poll_interval=0.2
    )

    class LaterRun:
        @staticmethod
        def get_first_reschedule_date(context: Any) -> datetime:
            return datetime.now(timezone.utc)

        @staticmethod
        def xcom_push(key: str, value: Any) -> None:
            """The link's value: not the subject here."""

    with capture_logs() as logs:
        with pytest.raises(AirflowRescheduleException):
            task.execute(context={})
        wait_until_ended(emulator, batch_id)
        task.execute(context={"ti": LaterRun()})

    lines = [str(entry["event"]) for entry in logs]
    notes = [line for line in lines if "marker request" in line]
    assert notes == [
        f"Batch {batch_id} holds 4 requests: the shard's 3 and one marker request (max_tokens 1) that "
        "proves the batch is this shard's. The counts below include it; the outcome files and the "
        "manifest do not."
    ]


def test_reschedule_mode_reschedules_on_a_transient_error(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 529, "count": 1, "retry_after": 30}})

    before = datetime.now(timezone.utc)
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        sensor(batch_id, mode="reschedule").execute(context={})

    # The retry-after (30 s) is honoured, not the 0.05 s poll interval.
    assert (rescheduled.value.reschedule_date - before).total_seconds() >= 30
    assert emulator.stats()["cancels"] == 0


@pytest.mark.parametrize(("cancel_on_timeout", "cancels"), [(True, 1), (False, 0)])
def test_a_passed_deadline_fails_with_the_batch_and_what_was_done(
    emulator, cancel_on_timeout: bool, cancels: int
) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    # The deadline is expires_at + margin: a margin of minus two days puts it in the past.
    task = sensor(batch_id, deadline_margin=-2 * 86_400, cancel_on_timeout=cancel_on_timeout)

    with pytest.raises(BatchDeadlineError, match=f"Batch {batch_id} did not end before") as failed:
        task.execute(context={})

    assert ("It was canceled" if cancel_on_timeout else "It was left running") in str(failed.value)
    assert emulator.stats()["cancels"] == cancels


def test_an_unknown_batch_fails_naming_it(emulator) -> None:
    with pytest.raises(BatchNotFoundError, match="msgbatch_nope was not found through connection"):
        sensor("msgbatch_nope").execute(context={})
    assert emulator.stats()["cancels"] == 0


def test_a_rejected_key_fails_without_retry(monkeypatch, emulator) -> None:
    batch_id = create_batch(emulator)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAUDE_WRONG_KEY",
        json.dumps({"conn_type": "claude-batch", "host": emulator.base_url, "password": "sk-ant-wrong"}),
    )
    with pytest.raises(AirflowFailException, match="Connection 'claude_wrong_key' was rejected"):
        sensor(batch_id, conn_id="claude_wrong_key").execute(context={})


def test_a_shard_without_batch_id_is_refused_before_any_call(emulator) -> None:
    shard = {key: value for key, value in descriptor("x").items() if key != "batch_id"}
    with pytest.raises(AirflowFailException, match="has no batch_id: pass the descriptor"):
        ClaudeBatchSensor(task_id="wait", shard=shard, deferrable=False).execute(context={})
    assert emulator.stats()["retrieves"] == 0


def test_on_kill_of_the_worker_side_sensor_leaves_the_batch_running(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    sensor(batch_id).on_kill()
    assert emulator.stats()["cancels"] == 0


def test_a_non_positive_poll_interval_is_refused_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        sensor("msgbatch_x", poll_interval=0)


# --- deferred ----------------------------------------------------------------------------------------


def test_deferring_fixes_the_deadline_from_the_batch_expiry(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    task = sensor(batch_id, deferrable=True, poll_interval=30, cancel_on_timeout=True, deadline_margin=600)

    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context={})

    trigger = deferred.value.trigger
    assert isinstance(trigger, ClaudeBatchTrigger)
    assert deferred.value.method_name == "execute_complete"
    expires_at = parse_timestamp(
        anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
        .messages.batches.retrieve(batch_id)
        .model_dump(mode="json")["expires_at"]
    )
    _, kwargs = trigger.serialize()
    assert kwargs == {
        "batch_id": batch_id,
        "conn_id": "claude_batch_default",
        "poll_interval": 30.0,
        "end_time": pytest.approx(expires_at + 600),
        "cancel_on_timeout": True,
    }


def test_an_already_ended_batch_returns_without_deferring(emulator) -> None:
    batch_id = create_batch(emulator)
    wait_until_ended(emulator, batch_id)
    result = sensor(batch_id, deferrable=True).execute(context={})
    assert result["request_counts"]["succeeded"] == 3


def test_resuming_with_a_timeout_event_fails_with_its_message() -> None:
    event = {"status": "timeout", "batch_id": "msgbatch_x", "message": "Batch msgbatch_x did not end ..."}
    with pytest.raises(BatchDeadlineError, match="Batch msgbatch_x did not end"):
        sensor("msgbatch_x", deferrable=True).execute_complete(context={}, event=event)


DAG_FILE = """
import json
import pathlib

import pendulum
from airflow.sdk import DAG, task

from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

SHARD = {shard!r}
REQUESTS = {requests!r}
OUT = {out!r}

with DAG("claude_batch_wait_deferred", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:

    @task
    def submit():
        batch = ClaudeBatchHook().create_batch(REQUESTS)
        return {{**SHARD, "batch_id": batch["id"]}}

    wait = ClaudeBatchSensor(task_id="wait", shard=submit(), poll_interval=0.2, deferrable=True)

    @task
    def check(result):
        pathlib.Path(OUT).write_text(json.dumps(result))
        assert result["request_counts"]["succeeded"] == SHARD["request_count"]

    check(wait.output)
"""


@pytest.mark.airflow
def test_deferred_for_real_through_the_triggerer(run_dag, emulator, tmp_path: Path) -> None:
    emulator.faults({"processing_seconds": 5.0})
    # The sensor's own first poll fails (transient), so the wait always defers to the trigger, however
    # late the task starts after the batch ended.
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 500, "count": 1}})
    requests = [
        {
            "custom_id": f"doc-{index}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Summarise document {index}"}],
            },
        }
        for index in range(5)
    ]
    shard = {key: value for key, value in descriptor("", 5).items() if key != "batch_id"}
    out = tmp_path / "result.json"
    dag_file = tmp_path / "claude_batch_wait_deferred.py"
    dag_file.write_text(DAG_FILE.format(shard=shard, requests=requests, out=str(out)))

    dag_run = run_dag(dag_file, "claude_batch_wait_deferred")

    assert dag_run.state == "success"
    result = json.loads(out.read_text())
    assert result["batch_id"].startswith("msgbatch_")
    assert result["processing_status"] == "ended"
    assert result["request_counts"] == {
        "processing": 0,
        "succeeded": 5,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert result["uri"].endswith("shard-00002.requests.jsonl")
    stats = emulator.stats()
    assert stats["batches_created"] == 1
    # The sensor retrieves once before deferring; the trigger's looks come from the poller's lists.
    assert stats["retrieves"] == 1
    assert stats["lists"] >= 1
    assert stats["cancels"] == 0


def test_a_batch_not_found_right_after_its_create_is_looked_for_again(emulator) -> None:
    batch_id = create_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 404, "count": 2}})

    result = sensor(batch_id, mode="poke").execute(context={})

    assert result["processing_status"] == "ended"
    assert emulator.stats()["retrieves"] >= 3
