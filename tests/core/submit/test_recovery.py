"""Recovery after a lost create answer: which listed batches are read; a batch is ours only by its marker."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from airflow_claude_batch.core.submit.submit_inputs import SubmitResult
from tests.core.submit.test_submission import START, World, lost_intent


def test_recovery_ignores_other_sizes_and_batches_before_the_intent() -> None:
    world = World()
    older = world.api.add_batch(["r0", "r1", "r2", "acb-marker-mine"])
    older["processing_status"] = "ended"
    lost_intent(world, newest_before=older["id"])
    world.api.add_batch(["r0", "r1"])
    mine = world.api.add_batch(["r0", "r1", "r2", "acb-marker-mine"])
    mine["processing_status"] = "ended"
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.batch_id == mine["id"]
    assert world.api.results_read == [mine["id"]]


def test_recovery_reads_the_whole_list_when_every_batch_listed_before_is_gone() -> None:
    """No clock decides: an older same-size batch is proven another's by its results, not its time."""
    world = World()
    older = world.api.add_batch(["a", "b", "c", "acb-marker-x"], created_at=START - timedelta(hours=1))
    older["processing_status"] = "ended"
    lost_intent(world, newest_before="msgbatch_deleted")
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert world.api.results_read == [older["id"]]


def test_recovery_stops_at_any_batch_the_intent_listed_before() -> None:
    world = World()
    before = world.api.add_batch(["r0", "r1", "r2", "acb-marker-x"])
    before["processing_status"] = "ended"
    intent = lost_intent(world, newest_before="msgbatch_deleted")
    world.store.state = dataclasses.replace(intent, listed_before=("msgbatch_deleted", before["id"]))
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert world.api.results_read == []


@pytest.mark.parametrize("skew", [timedelta(hours=-5), timedelta(hours=-1), timedelta(hours=3)])
def test_recovery_finds_its_batch_whatever_the_api_clock_says(skew: timedelta) -> None:
    world = World()
    world.api.add_batch(["x"])
    intent = lost_intent(world, newest_before="msgbatch_000")
    skewed = world.api.add_batch(
        ["r0", "r1", "r2", str(intent.marker_id)], created_at=intent.intent_time + skew
    )
    skewed["processing_status"] = "ended"
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.batch_id, result.action) == (skewed["id"], "recovered")


@pytest.mark.parametrize("bad", [["short"], ["missing"], ["short", "missing", "short"]])
def test_a_short_or_missing_read_of_a_candidate_is_read_again_never_taken_as_not_ours(bad: list[str]) -> None:
    world = World()
    intent = lost_intent(world)
    mine = world.api.add_batch(["r0", "r1", "r2", str(intent.marker_id)])
    mine["processing_status"] = "ended"
    world.api.bad_reads = list(bad)
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.batch_id, result.action) == (mine["id"], "recovered")
    assert world.slept == [1.0, 2.0, 4.0][: len(bad)]
    assert world.api.creates_received == 0
