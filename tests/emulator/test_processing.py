"""Processing over time, on a manual clock: status, counts, expiry, cancel, order, archive, errors.

The clocked server processes one request per second after a 2 s start delay, in a 100 s window, and
a cancel takes 5 s to end (see ``CLOCKED_CONFIG``).
"""

from __future__ import annotations

from datetime import timedelta

import anthropic
import pytest

from airflow_claude_batch.emulator import EmulatorConfig, EmulatorServer
from tests.emulator.builders import requests
from tests.emulator.conftest import CLOCKED_KEY, ManualClock


def _counts(batch) -> dict[str, int]:
    return batch.request_counts.model_dump()


def test_counts_stay_zero_until_the_whole_batch_ends(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(10))
    # Requests finish at 3, 4, ... 12 s: at every earlier moment the batch shows no progress.
    for _ in range(11):
        clock.advance(1.0)
        seen = clocked_client.messages.batches.retrieve(batch.id)
        assert seen.processing_status == "in_progress"
        assert _counts(seen) == {"processing": 10, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        assert seen.results_url is None
    clock.advance(1.0)
    ended = clocked_client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert _counts(ended) == {"processing": 0, "succeeded": 10, "errored": 0, "canceled": 0, "expired": 0}
    assert ended.ended_at - ended.created_at == timedelta(seconds=12)
    assert ended.results_url is not None


def test_results_come_in_a_seeded_shuffled_order(clock):
    orders = []
    for _ in range(2):
        with EmulatorServer(
            EmulatorConfig(api_key=CLOCKED_KEY, speed=1e6, seed=3, rpm_limit=None), clock=clock
        ) as server:
            client = anthropic.Anthropic(base_url=server.base_url, api_key=CLOCKED_KEY, max_retries=0)
            batch = client.messages.batches.create(requests=requests(50))
            clock.advance(1.0)
            orders.append([result.custom_id for result in client.messages.batches.results(batch.id)])
    submitted = [f"r{index}" for index in range(50)]
    assert sorted(orders[0]) == sorted(submitted)
    assert orders[0] != submitted
    assert orders[0] == orders[1]


def test_requests_left_when_the_window_closes_expire(clocked_client, clock):
    # 150 requests at one a second cannot end inside the 100 s window: 98 succeed (3 s ... 100 s).
    batch = clocked_client.messages.batches.create(requests=requests(150))
    clock.advance(99.0)
    assert clocked_client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    clock.advance(1.0)
    ended = clocked_client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.ended_at == ended.expires_at
    assert _counts(ended) == {"processing": 0, "succeeded": 98, "errored": 0, "canceled": 0, "expired": 52}
    outcomes = [result.result.type for result in clocked_client.messages.batches.results(batch.id)]
    assert outcomes.count("expired") == 52
    assert outcomes.count("succeeded") == 98


def test_cancel_keeps_finished_requests_and_cancels_the_rest(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(10))
    clock.advance(5.5)  # three requests are done (3, 4, 5 s)
    canceling = clocked_client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at - canceling.created_at == timedelta(seconds=5.5)
    assert _counts(canceling)["processing"] == 10
    clock.advance(4.9)
    assert clocked_client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    clock.advance(0.1)
    ended = clocked_client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert _counts(ended) == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 7, "expired": 0}
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at


def test_cancel_of_an_ended_batch_changes_nothing(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(2))
    clock.advance(10.0)
    ended = clocked_client.messages.batches.retrieve(batch.id)
    after_cancel = clocked_client.messages.batches.cancel(batch.id)
    assert after_cancel == ended
    assert after_cancel.cancel_initiated_at is None


def test_cancel_that_ends_before_its_grace_ends_at_the_last_request(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(2))
    clock.advance(3.5)  # one request is done at 3 s; the other would end at 4 s, inside the 5 s grace
    clocked_client.messages.batches.cancel(batch.id)
    clock.advance(0.5)
    ended = clocked_client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert _counts(ended)["succeeded"] == 1
    assert _counts(ended)["canceled"] == 1


def test_delete_needs_an_ended_batch(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(3))
    clocked_client.messages.batches.cancel(batch.id)
    with pytest.raises(anthropic.BadRequestError) as caught:
        clocked_client.messages.batches.delete(batch.id)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    clock.advance(5.0)
    assert clocked_client.messages.batches.delete(batch.id).type == "message_batch_deleted"


def test_batches_are_archived_after_29_days(clocked_client, clock):
    batch = clocked_client.messages.batches.create(requests=requests(1))
    clock.advance(29 * 24 * 3600 - 1)
    assert clocked_client.messages.batches.retrieve(batch.id).archived_at is None
    assert len(list(clocked_client.messages.batches.results(batch.id))) == 1
    clock.advance(1)
    archived = clocked_client.messages.batches.retrieve(batch.id)
    assert archived.archived_at - archived.created_at == timedelta(days=29)
    with pytest.raises(anthropic.NotFoundError):
        list(clocked_client.messages.batches.results(batch.id))


def _errored_ids(error_rate: float, seed: int, clock: ManualClock) -> tuple[set[str], set[str]]:
    config = EmulatorConfig(api_key=CLOCKED_KEY, speed=1e6, error_rate=error_rate, seed=seed, rpm_limit=None)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key=CLOCKED_KEY, max_retries=0)
        batch = client.messages.batches.create(requests=requests(400))
        clock.advance(1.0)
        errored = {
            r.custom_id: r.result
            for r in client.messages.batches.results(batch.id)
            if r.result.type == "errored"
        }
    assert {result.error.error.type for result in errored.values()} <= {"overloaded_error", "api_error"}
    return set(errored), {result.error.error.type for result in errored.values()}


def test_error_rate_errors_that_fraction_deterministically(clock):
    errored, kinds = _errored_ids(0.25, seed=11, clock=clock)
    assert 60 <= len(errored) <= 140
    assert kinds == {"overloaded_error", "api_error"}
    again, _ = _errored_ids(0.25, seed=11, clock=clock)
    assert again == errored
    other_seed, _ = _errored_ids(0.25, seed=12, clock=clock)
    assert other_seed != errored


def test_error_rate_zero_errors_nothing(clock):
    errored, _ = _errored_ids(0.0, seed=11, clock=clock)
    assert errored == set()
