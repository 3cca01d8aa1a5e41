"""The sensor on its own: any batch by id, and the base sensor's timeout, soft_fail and backoff."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.compat import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from tests.triggers.emulator_batches import create_batch, wait_until_ended

FAST = 0.05


def by_id(batch_id: str, **kwargs: Any) -> ClaudeBatchSensor:
    kwargs.setdefault("poll_interval", FAST)
    kwargs.setdefault("deferrable", False)
    return ClaudeBatchSensor(task_id="wait", batch_id=batch_id, **kwargs)


class _FirstRescheduleAgo:
    """A task instance whose first reschedule was ``seconds`` ago (what Airflow reads in reschedule mode)."""

    def __init__(self, seconds: float) -> None:
        self.first = datetime.now(timezone.utc) - timedelta(seconds=seconds)

    def get_first_reschedule_date(self, context: Any) -> datetime:
        return self.first

    def xcom_push(self, key: str, value: Any) -> None:
        """The batch's link (empty on the emulator); these tests do not read it."""


def test_waits_on_any_batch_by_id_and_returns_its_counts(emulator) -> None:
    emulator.faults({"processing_seconds": 0.3})
    batch_id = create_batch(emulator, requests=4)

    result = by_id(batch_id, mode="poke").execute(context={})

    assert result == {
        "batch_id": batch_id,
        "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": 4, "errored": 0, "canceled": 0, "expired": 0},
    }


def test_batch_id_and_shard_are_exclusive() -> None:
    with pytest.raises(ValueError, match=r"either batch_id= .* or shard="):
        ClaudeBatchSensor(task_id="wait", batch_id="msgbatch_x", shard={"batch_id": "msgbatch_x"})
    with pytest.raises(ValueError, match="either batch_id="):
        ClaudeBatchSensor(task_id="wait")


def test_batch_id_is_templated() -> None:
    assert "batch_id" in ClaudeBatchSensor.template_fields


@pytest.mark.parametrize(
    ("soft_fail", "raised"), [(False, AirflowSensorTimeout), (True, AirflowSkipException)]
)
def test_the_timeout_fails_or_skips_and_leaves_the_batch_running(emulator, soft_fail: bool, raised) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)

    with pytest.raises(raised, match=f"Batch {batch_id} had not ended"):
        by_id(batch_id, mode="poke", timeout=0.2, soft_fail=soft_fail).execute(context={})

    assert emulator.stats()["cancels"] == 0


def test_the_timeout_counts_from_the_first_reschedule(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    task = by_id(batch_id, mode="reschedule", timeout=300)

    with pytest.raises(AirflowSensorTimeout):
        task.execute(context={"ti": _FirstRescheduleAgo(301)})
    with pytest.raises(AirflowRescheduleException):
        task.execute(context={"ti": _FirstRescheduleAgo(10)})


def test_soft_fail_skips_on_an_unknown_batch(emulator) -> None:
    # Poke mode: the wait's looks again at a batch it never saw (a 404 right after a create) run in one try.
    with pytest.raises(AirflowSkipException, match="msgbatch_nope was not found"):
        by_id("msgbatch_nope", soft_fail=True, mode="poke").execute(context={})


def test_exponential_backoff_spreads_the_polls_up_to_max_wait(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    ten_minutes_in = {"ti": _FirstRescheduleAgo(600)}

    def delay(**kwargs: Any) -> float:
        before = datetime.now(timezone.utc)
        with pytest.raises(AirflowRescheduleException) as rescheduled:
            by_id(batch_id, mode="reschedule", poll_interval=1, **kwargs).execute(context=ten_minutes_in)
        return (rescheduled.value.reschedule_date - before).total_seconds()

    assert delay() < 5
    assert 60 < delay(exponential_backoff=True, max_wait=120) <= 121


def test_deferring_hands_the_timeout_to_airflow(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)

    with pytest.raises(TaskDeferred) as deferred:
        by_id(batch_id, deferrable=True, timeout=900).execute(context={})

    assert deferred.value.timeout == timedelta(seconds=900)
    assert deferred.value.trigger.batch_id == batch_id


def test_resuming_returns_the_counts_of_a_batch_given_by_id() -> None:
    event = {
        "status": "success",
        "batch_id": "msgbatch_x",
        "message": "batch msgbatch_x is ended",
        "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0},
    }
    result = by_id("msgbatch_x", deferrable=True).execute_complete(context={}, event=event)
    assert result["request_counts"]["errored"] == 1
    assert result["batch_id"] == "msgbatch_x"


DAG_FILE = """
import json
import pathlib

import pendulum
from airflow.sdk import DAG, task

from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

OUT = {out!r}

with DAG("claude_batch_wait_by_id", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:

    @task
    def made_elsewhere():
        return {batch_id!r}

    wait = ClaudeBatchSensor(
        task_id="wait",
        batch_id="{{{{ ti.xcom_pull(task_ids='made_elsewhere') }}}}",
        poll_interval=0.2,
        deferrable=True,
    )

    @task
    def check(result):
        pathlib.Path(OUT).write_text(json.dumps(result))

    made_elsewhere() >> wait
    check(wait.output)
"""


@pytest.mark.airflow
def test_a_templated_batch_id_is_waited_for_in_a_dag(
    run_dag, emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__BATCH_LINK", "{base_url}/ui/batches/{batch_id}")
    emulator.faults({"processing_seconds": 2.0})
    batch_id = create_batch(emulator, requests=2)
    out = tmp_path / "result.json"
    dag_file = tmp_path / "claude_batch_wait_by_id.py"
    dag_file.write_text(DAG_FILE.format(out=str(out), batch_id=batch_id))

    dag_run = run_dag(dag_file, "claude_batch_wait_by_id")

    assert dag_run.state == "success"
    result = json.loads(out.read_text())
    assert result["batch_id"] == batch_id
    assert result["request_counts"]["succeeded"] == 2
    wait_until_ended(emulator, batch_id)
    # What Airflow's API server serves for the task's "Claude batch" button.
    assert stored_link(dag_run, "wait") == f"{emulator.base_url.rstrip('/')}/ui/batches/{batch_id}"


def stored_link(dag_run: Any, task_id: str) -> str | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_claude_batch.links import ClaudeBatchLink

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=ClaudeBatchLink().xcom_key,
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else XComModel.deserialize_value(row)
