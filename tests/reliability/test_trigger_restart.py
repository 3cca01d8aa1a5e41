"""Invariants 2 and 3 across triggerer restarts, at the unit level: a trigger re-created from the row a
triggerer stores (``Trigger.from_object``, its kwargs read back) keeps its wall-clock deadline, never
creates anything and never cancels a healthy batch. (Restarting a real triggerer process is the
deployment check's part.)

The emulator here runs on a clock the test holds: a batch stays in progress, however slow the machine,
until the test moves the clock on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from airflow.models.trigger import Trigger
from airflow.sdk.module_loading import import_string

from airflow_claude_batch.compat import TaskDeferred
from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.emulator import EmulatorServer
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.fixtures.emulator import DEFAULT_CONN_ENV, FAST_CONFIG, EmulatorHandle
from tests.reliability.conftest import FaultyEmulator
from tests.reliability.harness import first_event
from tests.reliability.transport_faults import TransportFaults


class HeldClock:
    """The emulator's clock: still until :meth:`advance`."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> HeldClock:
    return HeldClock()


@pytest.fixture
def held_emulator(clock: HeldClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyEmulator]:
    """An emulator with transport faults on the held clock, set as the default connection."""
    server = EmulatorServer(FAST_CONFIG, clock=clock)
    transport = TransportFaults(server.app)
    server.app = transport
    server.start()
    handle = EmulatorHandle(base_url=server.base_url)
    monkeypatch.setenv(DEFAULT_CONN_ENV, handle.connection_json)
    try:
        yield FaultyEmulator(handle, transport)
    finally:
        handle.client.close()
        server.stop()


def restarted(trigger: ClaudeBatchTrigger) -> ClaudeBatchTrigger:
    """The trigger as a (re)started triggerer builds it: from the stored row's class path and kwargs."""
    row = Trigger.from_object(trigger)
    return import_string(row.classpath)(**row.kwargs)


def create_batch(folder: Path, requests: int = 4) -> str:
    """Create a batch of ``requests`` small questions through the hook; return its id."""
    lines = [
        orjson.dumps(
            {
                "custom_id": f"q-{number}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"Question {number}"}],
                },
            }
        )
        for number in range(requests)
    ]
    path = folder / "shard.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    body_bytes = batch_body_size(sum(map(len, lines)), requests)
    return ClaudeBatchHook().create_batch_from_file(path, requests, body_bytes)["id"]


async def run_briefly(trigger: ClaudeBatchTrigger, seconds: float) -> None:
    """Let the trigger poll for a while, then stop it as a triggerer shutting down does."""
    running = asyncio.ensure_future(anext(trigger.run()))
    await asyncio.sleep(seconds)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await trigger.cleanup()


async def test_three_restarts_with_failing_polls_keep_the_deadline_and_never_create_or_cancel(
    held_emulator: FaultyEmulator, clock: HeldClock, figures: Any, tmp_path: Path
) -> None:
    batch_id = create_batch(tmp_path)
    deadline = time.time() + 600
    trigger = ClaudeBatchTrigger(batch_id=batch_id, poll_interval=0.05, end_time=deadline)
    polls_before = held_emulator.stats()["lists"]  # the poller lists; a list showing the batch is a poll

    for kind in ("429", "reset", "529"):
        if kind == "reset":
            held_emulator.transport.arm("list", "reset", count=2)
        else:
            held_emulator.faults({"fail_next": {"endpoint": "list", "status": int(kind), "count": 2}})
        await run_briefly(trigger, 0.3)
        trigger = restarted(trigger)
        assert trigger.end_time == deadline
    clock.advance(60)  # the batch ends
    event = await first_event(trigger)

    stats = held_emulator.stats()
    restarts = 3
    figures.add("faults_injected", held_emulator.faults_fired + restarts)
    assert event["status"] == "success"
    assert event["end_time"] == deadline
    assert stats["lists"] > polls_before
    assert stats["creates_received"] == 1
    assert stats["cancels"] == 0


async def test_a_trigger_restarted_after_its_deadline_gives_up_without_cancelling(
    held_emulator: FaultyEmulator, figures: Any, tmp_path: Path
) -> None:
    batch_id = create_batch(tmp_path)
    deadline = time.time() + 1.5
    trigger = ClaudeBatchTrigger(batch_id=batch_id, poll_interval=0.05, end_time=deadline)
    await run_briefly(trigger, 0.2)
    await asyncio.sleep(max(deadline - time.time(), 0) + 0.1)  # the triggerer was down past the deadline

    event = await first_event(restarted(trigger))

    figures.add("faults_injected")
    assert event["status"] == "timeout"
    assert event["cancel_requested"] is False
    assert held_emulator.stats()["cancels"] == 0
    assert held_emulator.stats()["creates_received"] == 1


def test_a_sensor_deferred_twice_fixes_the_same_deadline(
    held_emulator: FaultyEmulator, tmp_path: Path
) -> None:
    """A worker restarted before the deferral computes the deadline again: from the batch, so the same."""
    batch_id = create_batch(tmp_path)
    shard = {
        "run_uri": "file:///runs/x",
        "round": 0,
        "index": 0,
        "uri": "file:///runs/x/s",
        "batch_id": batch_id,
    }
    deadlines = []
    for _ in range(2):
        sensor = ClaudeBatchSensor(task_id="wait", shard=shard, poll_interval=0.05, deferrable=True)
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute({})
        deadlines.append(restarted(deferred.value.trigger).end_time)
        time.sleep(0.2)

    batch = ClaudeBatchHook().get_batch(batch_id)
    assert deadlines[0] == deadlines[1]
    assert deadlines[0] > time.time() + 60  # the batch's expiry plus the margin, not "now plus something"
    assert batch["processing_status"] == "in_progress"
    assert held_emulator.stats()["creates_received"] == 1
    assert held_emulator.stats()["cancels"] == 0
