"""The deferrable trigger against the emulator over HTTP: ``run()`` to its first event."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import anthropic
import pytest
from airflow.sdk.module_loading import import_string
from airflow.serialization.serialized_objects import BaseSerialization
from airflow.triggers.base import TriggerEvent
from structlog.testing import capture_logs

from airflow_claude_batch.core.wait.poll_messages import ProgressLog
from airflow_claude_batch.triggers import async_clients as clients_module
from airflow_claude_batch.triggers import batch as trigger_module
from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.triggers.emulator_batches import create_batch, wait_until_ended

FAST = 0.05  # seconds between polls: the batches of these tests end within seconds


async def first_event(trigger: ClaudeBatchTrigger, timeout: float = 30.0) -> dict[str, Any]:
    events = trigger.run()
    try:
        event = await asyncio.wait_for(anext(events), timeout)
    finally:
        await events.aclose()
    assert isinstance(event, TriggerEvent)
    return event.payload


def trigger_for(batch_id: str, **kwargs: Any) -> ClaudeBatchTrigger:
    kwargs.setdefault("poll_interval", FAST)
    kwargs.setdefault("end_time", time.time() + 120)
    return ClaudeBatchTrigger(batch_id=batch_id, conn_id="claude_batch_default", **kwargs)


async def test_a_batch_that_ends_fires_success_with_its_counts(emulator) -> None:
    emulator.faults({"processing_seconds": 1.5})
    batch_id = create_batch(emulator, requests=4)

    event = await first_event(trigger_for(batch_id))

    assert event["status"] == "success"
    assert event["batch_id"] == batch_id
    assert event["processing_status"] == "ended"
    assert event["request_counts"] == {
        "processing": 0,
        "succeeded": 4,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    stats = emulator.stats()
    assert stats["lists"] >= 2  # it saw the batch running, then ended, on the poller's lists
    assert stats["retrieves"] == 0  # the list showed it: no call of its own
    assert stats["cancels"] == 0


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        (
            {"status": 429, "count": 2, "retry_after": 0.2},
            "rate limited, HTTP 429, rate_limit_error, retry-after 0.2 s",
        ),
        ({"status": 500, "count": 3}, "server error, HTTP 500, api_error"),
        ({"status": 529, "count": 2}, "overloaded, HTTP 529, overloaded_error"),
    ],
    ids=["429-retry-after", "500x3", "529"],
)
async def test_transient_errors_are_waited_out_and_never_cancel(emulator, fault: dict, logged: str) -> None:
    emulator.faults({"processing_seconds": 0.3})
    batch_id = create_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": "list", **fault}})

    with capture_logs() as logs:
        event = await first_event(trigger_for(batch_id))

    assert event["status"] == "success"
    assert event["request_counts"]["succeeded"] == 3
    stats = emulator.stats()
    assert stats["faults_fired"] == fault["count"]
    assert stats["lists"] >= fault["count"] + 1
    assert stats["cancels"] == 0
    warnings = [
        entry["event"]
        for entry in logs
        # Airflow 3.1 warns about the connection type's "_" each time it reads the connection.
        if entry["log_level"] == "warning" and not entry["event"].startswith("Connection schemes")
    ]
    assert len(warnings) == fault["count"]
    assert all(logged in message and batch_id in message for message in warnings)
    assert all("keeps running" in message for message in warnings)


async def test_connection_errors_are_waited_out_until_the_deadline(monkeypatch, emulator) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAUDE_UNREACHABLE",
        json.dumps({"conn_type": "claude-batch", "host": f"http://127.0.0.1:{dead_port}", "password": "k"}),
    )
    trigger = ClaudeBatchTrigger(
        batch_id="msgbatch_unreachable",
        conn_id="claude_unreachable",
        poll_interval=FAST,
        end_time=time.time() + 1.0,
        cancel_on_timeout=False,
    )

    event = await first_event(trigger)

    # Not an error event: unreachable is transient, so the wait went on until its deadline.
    assert event["status"] == "timeout"
    assert event["cancel_requested"] is False
    assert "msgbatch_unreachable" in event["message"]
    assert "its status could not be read" in event["message"]


@pytest.mark.parametrize(("cancel_on_timeout", "cancels"), [(True, 1), (False, 0)])
async def test_a_passed_deadline_fires_timeout_and_cancels_only_when_asked(
    emulator, cancel_on_timeout: bool, cancels: int
) -> None:
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)

    event = await first_event(
        trigger_for(batch_id, end_time=time.time() - 1, cancel_on_timeout=cancel_on_timeout)
    )

    assert event["status"] == "timeout"
    assert event["processing_status"] == "in_progress"
    assert event["cancel_requested"] is cancel_on_timeout
    assert emulator.stats()["cancels"] == cancels
    assert event["message"].startswith(f"Batch {batch_id} did not end before the wait's deadline")
    expected = "It was canceled" if cancel_on_timeout else "It was left running"
    assert expected in event["message"]


async def test_an_ended_batch_is_success_even_past_the_deadline(emulator) -> None:
    batch_id = create_batch(emulator)
    wait_until_ended(emulator, batch_id)

    event = await first_event(trigger_for(batch_id, end_time=time.time() - 10, cancel_on_timeout=True))

    assert event["status"] == "success"
    assert emulator.stats()["cancels"] == 0


def test_serialize_keeps_every_argument_through_airflow_serialization() -> None:
    trigger = ClaudeBatchTrigger(
        batch_id="msgbatch_x",
        conn_id="my_conn",
        poll_interval=30,
        end_time=1_900_000_000.5,
        cancel_on_timeout=True,
    )
    classpath, kwargs = trigger.serialize()
    # What the triggerer does after a restart: read the row back, import the class, build it again.
    stored = json.loads(json.dumps(BaseSerialization.serialize(kwargs)))
    recreated = import_string(classpath)(**BaseSerialization.deserialize(stored))

    assert recreated.serialize() == (classpath, kwargs)
    assert recreated.end_time == 1_900_000_000.5
    assert kwargs == {
        "batch_id": "msgbatch_x",
        "conn_id": "my_conn",
        "poll_interval": 30.0,
        "end_time": 1_900_000_000.5,
        "cancel_on_timeout": True,
    }


def test_without_an_end_time_the_deadline_is_fixed_at_construction() -> None:
    before = time.time()
    trigger = ClaudeBatchTrigger(batch_id="msgbatch_x")
    _, kwargs = trigger.serialize()
    assert before + 25 * 3600 <= kwargs["end_time"] <= time.time() + 25 * 3600
    assert ClaudeBatchTrigger(**kwargs).end_time == trigger.end_time


def test_a_non_positive_poll_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        ClaudeBatchTrigger(batch_id="msgbatch_x", poll_interval=0)


async def test_a_triggerer_restart_keeps_the_deadline_and_never_cancels(emulator) -> None:
    # Long enough that the batch is still in progress at the first poll on a slow, busy machine (at 3 s
    # the first trigger could see the batch end and return before the restart).
    emulator.faults({"processing_seconds": 10.0})
    batch_id = create_batch(emulator)
    first = trigger_for(batch_id, end_time=time.time() + 300)

    # The triggerer stops: it cancels the running task, then calls cleanup().
    running = asyncio.ensure_future(anext(first.run()))
    for _ in range(600):  # until it polled once (the first poll builds the shared client)
        if emulator.stats()["lists"] or running.done():
            break
        await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await first.cleanup()
    lists_before_restart = emulator.stats()["lists"]

    classpath, kwargs = first.serialize()
    second = import_string(classpath)(**kwargs)
    event = await first_event(second)

    assert second.end_time == first.end_time
    assert event["status"] == "success"
    assert event["end_time"] == first.end_time
    assert lists_before_restart >= 1
    assert emulator.stats()["cancels"] == 0


async def test_on_kill_leaves_the_batch_running_as_cleanup_does(emulator) -> None:
    # Airflow calls on_kill when a user clears (or marks) a deferred wait: a clear must never cancel.
    emulator.faults({"processing_seconds": 60})
    batch_id = create_batch(emulator)
    trigger = trigger_for(batch_id)

    await trigger.cleanup()
    await trigger.on_kill()

    assert emulator.stats()["cancels"] == 0
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
    batch = client.messages.batches.retrieve(batch_id)
    assert batch.processing_status == "in_progress"
    assert batch.cancel_initiated_at is None


async def test_an_unknown_batch_ends_with_an_error_naming_it(emulator) -> None:
    event = await first_event(trigger_for("msgbatch_doesnotexist"))

    assert event["status"] == "error"
    assert event["error_kind"] == "not_found"
    assert "msgbatch_doesnotexist" in event["message"]
    assert "'claude_batch_default'" in event["message"]
    assert emulator.stats()["cancels"] == 0


async def test_a_rejected_key_ends_with_an_error_naming_the_connection(monkeypatch, emulator) -> None:
    batch_id = create_batch(emulator)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAUDE_WRONG_KEY",
        json.dumps({"conn_type": "claude-batch", "host": emulator.base_url, "password": "sk-ant-wrong"}),
    )
    trigger = ClaudeBatchTrigger(batch_id=batch_id, conn_id="claude_wrong_key", poll_interval=FAST)

    event = await first_event(trigger)

    assert event["status"] == "error"
    assert event["error_kind"] == "auth"
    assert "Connection 'claude_wrong_key' was rejected" in event["message"]
    assert "sk-ant-wrong" not in event["message"]
    assert emulator.stats()["cancels"] == 0


async def test_a_missing_connection_says_so_instead_of_blaming_the_key(emulator) -> None:
    batch_id = create_batch(emulator)
    trigger = ClaudeBatchTrigger(batch_id=batch_id, conn_id="claude_nowhere", poll_interval=FAST)

    event = await first_event(trigger)

    assert event["status"] == "error"
    assert event["error_kind"] == "connection_config"
    assert "'claude_nowhere' is not defined" in event["message"]
    assert "nothing reached the API" in event["message"]
    assert "rejected" not in event["message"]
    assert emulator.stats()["retrieves"] == 0


async def test_progress_is_logged_at_most_once_per_poll_without_the_key(emulator, monkeypatch) -> None:
    # Every poll is worth a line here: the throttle between unchanged polls is set to zero.
    monkeypatch.setattr(trigger_module, "ProgressLog", lambda: ProgressLog(every=0.0))
    emulator.faults({"processing_seconds": 1.5})
    batch_id = create_batch(emulator, requests=5)

    with capture_logs() as logs:
        event = await first_event(trigger_for(batch_id, poll_interval=0.1))

    assert event["status"] == "success"
    messages = [str(entry["event"]) for entry in logs]
    progress = [message for message in messages if message.startswith(f"batch {batch_id} is")]
    stats = emulator.stats()
    assert len(progress) == stats["lists"] + stats["retrieves"]
    running = [line for line in progress if "in_progress; 0 of 5 requests done (0%)" in line]
    assert running
    assert all("left before it expires" in line for line in running)
    assert "ended; 5 of 5 requests done (100%): 0 processing, 5 succeeded" in progress[-1]
    assert all(emulator.api_key not in str(entry) for entry in logs)
    assert all("Classify ticket" not in str(entry) for entry in logs)


async def test_unchanged_polls_are_not_logged_every_time(emulator) -> None:
    emulator.faults({"processing_seconds": 1.5})
    batch_id = create_batch(emulator, requests=2)

    with capture_logs() as logs:
        event = await first_event(trigger_for(batch_id))

    assert event["status"] == "success"
    progress = [str(entry["event"]) for entry in logs if str(entry["event"]).startswith(f"batch {batch_id}")]
    # The first poll and the end, not one line per poll.
    assert emulator.stats()["lists"] > 3
    assert len(progress) == 2
    assert "in_progress" in progress[0]
    assert "ended" in progress[1]


async def test_triggers_on_one_loop_share_one_client(emulator, monkeypatch) -> None:
    built: list[str] = []
    real_build = clients_module.build_client

    async def counting_build(conn_id: str) -> anthropic.AsyncAnthropic:
        built.append(conn_id)
        return await real_build(conn_id)

    monkeypatch.setattr(clients_module, "build_client", counting_build)
    emulator.faults({"processing_seconds": 0.3})
    batch_ids = [create_batch(emulator, requests=1) for _ in range(20)]

    events = await asyncio.gather(*(first_event(trigger_for(batch_id)) for batch_id in batch_ids))

    assert [event["status"] for event in events] == ["success"] * 20
    assert {event["batch_id"] for event in events} == set(batch_ids)
    assert built == ["claude_batch_default"]
