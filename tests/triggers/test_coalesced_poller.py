"""Triggers sharing one poller, against the emulator over HTTP: lists instead of retrieves."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from airflow_claude_batch.core.wait import coalesced_polling
from airflow_claude_batch.triggers import coalesced_poller
from airflow_claude_batch.triggers.coalesced_poller import CoalescedPoller, pollers
from tests.triggers.emulator_batches import create_batch
from tests.triggers.test_batch import first_event, trigger_for


def the_poller() -> CoalescedPoller:
    (poller,) = pollers()
    return poller


async def test_triggers_share_one_poller_and_each_fires_for_its_own_batch(emulator) -> None:
    # Batches of different sizes that end at different times: each trigger must get its own counts.
    batch_sizes = {}
    for index, seconds in enumerate([0.3, 0.8, 1.5, 0.5, 2.0, 1.0]):
        emulator.faults({"processing_seconds": seconds})
        batch_sizes[create_batch(emulator, requests=index + 1)] = index + 1
    started = time.monotonic()

    events = await asyncio.gather(*(first_event(trigger_for(batch_id)) for batch_id in batch_sizes))
    elapsed = time.monotonic() - started

    assert [event["status"] for event in events] == ["success"] * len(batch_sizes)
    for event in events:
        assert event["request_counts"]["succeeded"] == batch_sizes[event["batch_id"]]
    assert {event["batch_id"] for event in events} == set(batch_sizes)
    stats = emulator.stats()
    assert stats["retrieves"] == 0  # every batch was on the first page
    # One list serves all six: per-batch polling every 0.05 s would have made ~6 calls per 0.05 s.
    per_batch_calls = len(batch_sizes) * elapsed / 0.05
    assert stats["lists"] < per_batch_calls / 3
    assert the_poller().tasks_started == 1


async def test_a_batch_the_list_does_not_show_is_retrieved_then_paged_to(emulator, monkeypatch) -> None:
    # Pages of two batches, and a single page for batches of unknown age.
    monkeypatch.setattr(coalesced_poller, "LIST_PAGE_LIMIT", 2)
    monkeypatch.setattr(coalesced_polling, "BLIND_LIST_PAGES", 1)
    emulator.faults({"processing_seconds": 1.5})
    oldest = create_batch(emulator)
    emulator.faults({"processing_seconds": 60})
    for _ in range(3):
        create_batch(emulator)  # newer batches push the watched one to the second page

    event = await first_event(trigger_for(oldest, poll_interval=0.1))

    assert event["status"] == "success"
    assert event["batch_id"] == oldest
    stats = emulator.stats()
    # The first look: one page did not show it, so it was retrieved, which told its creation time;
    # from then on the lists paged back to it (two pages a cycle) and no retrieve was needed.
    assert stats["retrieves"] == 1
    assert stats["lists"] >= 3
    assert stats["lists"] % 2 == 1


async def test_a_poller_that_dies_is_replaced_by_the_next_waiting_trigger(
    emulator, monkeypatch, caplog
) -> None:
    emulator.faults({"processing_seconds": 1.5})
    batch_ids = [create_batch(emulator) for _ in range(3)]
    real_list_page = CoalescedPoller._list_page
    calls = 0

    async def list_page_with_a_bug(self: CoalescedPoller, after_id: str | None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bug in the poller")
        return await real_list_page(self, after_id)

    monkeypatch.setattr(CoalescedPoller, "_list_page", list_page_with_a_bug)

    events = await asyncio.gather(*(first_event(trigger_for(batch_id)) for batch_id in batch_ids))

    assert [event["status"] for event in events] == ["success"] * 3
    assert the_poller().tasks_started == 2
    assert emulator.stats()["cancels"] == 0
    # The poller's own log (the triggerer's), not a task's: it serves them all.
    failures = [record for record in caplog.records if record.name == coalesced_poller.__name__]
    assert any("The poller of connection 'claude_batch_default' failed" in r.getMessage() for r in failures)
    assert any("a new one takes over" in r.getMessage() for r in failures)


async def test_each_trigger_keeps_its_own_deadline(emulator) -> None:
    emulator.faults({"processing_seconds": 60})
    slow = create_batch(emulator)
    emulator.faults({"processing_seconds": 2.0})
    quick = create_batch(emulator)
    started = time.time()

    late, done = await asyncio.gather(
        first_event(trigger_for(slow, end_time=started + 0.7, cancel_on_timeout=True)),
        first_event(trigger_for(quick, end_time=started + 60)),
    )

    assert late["status"] == "timeout"
    assert late["batch_id"] == slow
    assert late["cancel_requested"] is True
    assert done["status"] == "success"
    assert done["batch_id"] == quick
    stats = emulator.stats()
    assert stats["cancels"] == 1  # the slow batch's, and only it


async def test_a_429_on_the_list_backs_every_trigger_off_for_its_retry_after(emulator, monkeypatch) -> None:
    emulator.faults({"processing_seconds": 2.0})
    batch_ids = [create_batch(emulator) for _ in range(4)]
    emulator.faults({"fail_next": {"endpoint": "list", "status": 429, "count": 1, "retry_after": 1.0}})
    call_times: list[float] = []
    real_list_page = CoalescedPoller._list_page

    async def timed_list_page(self: CoalescedPoller, after_id: str | None) -> Any:
        call_times.append(time.monotonic())
        return await real_list_page(self, after_id)

    monkeypatch.setattr(CoalescedPoller, "_list_page", timed_list_page)

    with capture_logs() as logs:
        events = await asyncio.gather(
            *(first_event(trigger_for(batch_id, end_time=time.time() + 60)) for batch_id in batch_ids)
        )

    assert [event["status"] for event in events] == ["success"] * 4
    assert emulator.stats()["faults_fired"] == 1
    # The call after the 429 waited for its retry-after, though every trigger polls every 0.05 s.
    assert call_times[1] - call_times[0] >= 1.0
    warnings = [str(entry["event"]) for entry in logs if "rate limited, HTTP 429" in str(entry["event"])]
    # Every trigger that was due when the list failed says so, for its own batch.
    assert 1 <= len(warnings) <= 4
    assert all(any(batch_id in warning for batch_id in batch_ids) for warning in warnings)
    assert all("keeps running" in warning for warning in warnings)


async def test_the_poller_stays_within_its_share_of_the_rate_limit(emulator, monkeypatch) -> None:
    # 120 requests a minute, half for polling: one call a second at most, though triggers ask for 20.
    monkeypatch.setenv("CLAUDE_BATCH_BATCH_RPM_LIMIT", "120")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_RPM_SHARE", "0.5")
    emulator.faults({"processing_seconds": 3.0})
    batch_ids = [create_batch(emulator) for _ in range(3)]
    started = time.monotonic()

    events = await asyncio.gather(*(first_event(trigger_for(batch_id)) for batch_id in batch_ids))
    elapsed = time.monotonic() - started

    assert [event["status"] for event in events] == ["success"] * 3
    assert the_poller().budget.calls_per_minute == 60.0
    stats = emulator.stats()
    assert stats["lists"] + stats["retrieves"] <= elapsed / 1.0 + 1


@pytest.mark.parametrize("status", [404, 400])
async def test_a_connection_whose_list_is_not_served_falls_back_to_retrieves(
    emulator, caplog, status: int
) -> None:
    # Long enough for several polls even on a loaded machine: the later ones must all be retrieves.
    emulator.faults({"processing_seconds": 3})
    batch_id = create_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": "list", "status": status, "count": 1}})

    event = await first_event(trigger_for(batch_id))

    assert event["status"] == "success"
    stats = emulator.stats()
    assert stats["lists"] == 1  # tried once, then never again on this connection
    assert stats["retrieves"] >= 2
    assert any("each batch is retrieved on its own" in record.getMessage() for record in caplog.records)
