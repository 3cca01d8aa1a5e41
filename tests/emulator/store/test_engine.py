"""Properties of the batch engine that hold for any batch, schedule, cancel and fault."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.emulator.store.engine import Engine, workspace_of
from airflow_claude_batch.emulator.store.faults import BatchFaults
from tests.emulator.builders import requests
from tests.emulator.conftest import ManualClock

BASE_URL = "http://emulator.test/"
WORKSPACE = workspace_of("key")


def _body(count: int) -> bytes:
    return orjson.dumps({"requests": requests(count)})


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=40),
    speed=st.floats(min_value=0.5, max_value=50.0),
    start_delay=st.floats(min_value=0.0, max_value=5.0),
    window=st.floats(min_value=0.5, max_value=60.0),
    cancel_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=60.0)),
    expire_fraction=st.sampled_from([0.0, 0.2, 1.0]),
    error_fraction=st.sampled_from([0.0, 0.5]),
    error_rate=st.sampled_from([0.0, 0.3]),
)
def test_every_request_ends_exactly_once_and_counts_add_up(
    count, speed, start_delay, window, cancel_after, expire_fraction, error_fraction, error_rate
):
    clock = ManualClock()
    config = EmulatorConfig(
        speed=speed, start_delay=start_delay, window_seconds=window, cancel_seconds=1.0, error_rate=error_rate
    )
    engine = Engine(config, clock)
    faults = BatchFaults(expire_fraction=expire_fraction, error_fraction=error_fraction)
    batch_id = engine.create(_body(count), "key", BASE_URL, lambda: faults)["id"]
    if cancel_after is not None:
        clock.advance(cancel_after)
        engine.cancel(batch_id, BASE_URL, WORKSPACE)
    clock.advance(window + 1.0)

    batch = engine.retrieve(batch_id, BASE_URL, WORKSPACE)
    assert batch["processing_status"] == "ended"
    counts = batch["request_counts"]
    assert sum(counts.values()) == count
    assert counts["processing"] == 0
    assert batch["ended_at"] <= batch["expires_at"]

    lines = [orjson.loads(line) for line in engine.results(batch_id, WORKSPACE).splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"r{index}" for index in range(count))
    outcomes = Counter(line["result"]["type"] for line in lines)
    assert {name: counts[name] for name in outcomes} == dict(outcomes)
    if cancel_after is None:
        assert counts["canceled"] == 0
    if expire_fraction == 1.0:
        assert counts["expired"] == count


@settings(max_examples=30, deadline=None)
@given(total=st.integers(min_value=0, max_value=25), limit=st.integers(min_value=1, max_value=7))
def test_paging_visits_every_batch_once_in_both_directions(total, limit):
    engine = Engine(EmulatorConfig(), ManualClock())
    created = [engine.create(_body(1), "key", BASE_URL, BatchFaults)["id"] for _ in range(total)]

    seen_forward, after_id = [], None
    while True:
        page = engine.list_batches(BASE_URL, WORKSPACE, limit=limit, after_id=after_id)
        seen_forward += [batch["id"] for batch in page["data"]]
        if not page["has_more"]:
            break
        after_id = page["last_id"]
    assert seen_forward == list(reversed(created))

    if created:
        seen_backward, before_id = [], created[0]
        while True:
            page = engine.list_batches(BASE_URL, WORKSPACE, limit=limit, before_id=before_id)
            seen_backward = [batch["id"] for batch in page["data"]] + seen_backward
            if not page["has_more"]:
                break
            before_id = page["first_id"]
        assert seen_backward == list(reversed(created[1:]))
