"""The exactly-once submit: every crash point, lost answers, recovery by listing, and the body."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from airflow_claude_batch.batch.limits import batch_body_size
from airflow_claude_batch.batch.state import ShardFingerprint, SubmitState, format_utc
from airflow_claude_batch.batch.submission import (
    CreateRefused,
    ShardToSubmit,
    SubmitResult,
    iter_batch_body,
    submit_shard,
)
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    ConnectionConfigError,
    InputError,
    SubmitRecoveryError,
)

START = datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc)
SHARD = ShardToSubmit(
    uri="file:///runs/d/r/round-0/shard-00000.requests.jsonl", request_count=3, body_bytes=99
)
PRINT = ShardFingerprint(sha256="f" * 64, request_count=3, body_bytes=99)


class WorkerKilled(BaseException):
    """The worker process dies: nothing after this point of the attempt runs."""


class ServerError(Exception):
    """A 5xx / dropped connection: the caller cannot tell whether the batch was made."""


@dataclass
class Clock:
    moment: datetime = START

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


@dataclass
class Faults:
    """Where the next attempt dies; ``crash_at`` counts checkpoints from 1."""

    crash_at: int | None = None
    seen: int = 0
    names: list[str] = field(default_factory=list)

    def checkpoint(self, name: str) -> None:
        self.seen += 1
        self.names.append(name)
        if self.crash_at == self.seen:
            self.crash_at = None
            raise WorkerKilled(name)


@dataclass
class FakeApi:
    """The API as the submit sees it; ``batches`` oldest first, listed newest first."""

    faults: Faults
    clock: Clock
    request_count: int = 3
    batches: list[dict[str, Any]] = field(default_factory=list)
    creates_received: int = 0
    # "after_create": the batch is made, the connection drops before the answer (outcome unknown);
    # "before_create": the connection drops before the API made anything (outcome unknown);
    # "refused": answered 5xx, nothing made; "refused_after_create": answered 500 after making it.
    lose_next: str | None = None

    def add_batch(self, count: int, *, created_at: datetime | None = None) -> dict[str, Any]:
        batch = {
            "id": f"msgbatch_{len(self.batches):03d}",
            "created_at": format_utc(created_at or self.clock()),
            "processing_status": "in_progress",
            "request_counts": {
                "processing": count,
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
        }
        self.batches.append(batch)
        return batch

    def create_batch(self) -> dict[str, Any]:
        self.faults.checkpoint("create: before it reaches the API")
        mode, self.lose_next = self.lose_next, None
        if mode == "before_create":
            raise ServerError("connection reset before the API read the body")
        self.creates_received += 1
        if mode == "refused":
            raise CreateRefused("HTTP 529 overloaded_error")
        batch = self.add_batch(self.request_count)
        self.faults.checkpoint("create: batch made, answer on its way")
        if mode == "after_create":
            raise ServerError("connection dropped before the answer")
        if mode == "refused_after_create":
            raise CreateRefused("HTTP 500 api_error")
        return dict(batch)

    def iter_batches(self, page_size: int) -> Iterator[dict[str, Any]]:
        self.faults.checkpoint(f"list (page {page_size})")
        yield from (dict(batch) for batch in reversed(self.batches))


@dataclass
class FakeStore:
    faults: Faults
    location: str = "round-0/shard-00000.state.json"
    state: SubmitState | None = None
    others: dict[str, SubmitState] = field(default_factory=dict)
    writes: list[SubmitState] = field(default_factory=list)

    def read(self) -> SubmitState | None:
        self.faults.checkpoint("read state")
        return self.state

    def write(self, state: SubmitState) -> None:
        self.faults.checkpoint(f"write {state.status}: before")
        self.state = state
        self.writes.append(state)
        self.faults.checkpoint(f"write {state.status}: after")

    def siblings(self) -> Iterator[tuple[str, SubmitState]]:
        self.faults.checkpoint("read siblings")
        yield from self.others.items()


@dataclass
class World:
    faults: Faults = field(default_factory=Faults)
    clock: Clock = field(default_factory=Clock)
    fingerprint: ShardFingerprint = PRINT

    def __post_init__(self) -> None:
        self.api = FakeApi(self.faults, self.clock)
        self.store = FakeStore(self.faults)

    def submit(self, shard: ShardToSubmit = SHARD) -> SubmitResult:
        return submit_shard(
            shard, api=self.api, store=self.store, fingerprint=lambda: self.fingerprint, now=self.clock
        )

    def submit_until_done(self, attempts: int = 6) -> SubmitResult:
        """Run attempts the way task retries do, until one succeeds."""
        for _ in range(attempts):
            try:
                return self.submit()
            except (WorkerKilled, AfterSubmitError):
                continue
        raise AssertionError("the submit never succeeded")


def test_first_submit_writes_intent_creates_once_and_records_the_batch() -> None:
    world = World()
    result = world.submit()
    assert result == SubmitResult("msgbatch_000", "created", 3)
    assert [state.status for state in world.store.writes] == ["intent", "submitted"]
    assert world.store.writes[0].intent_at < world.api.batches[0]["created_at"]
    assert world.store.state is not None
    assert world.store.state.batch_id == "msgbatch_000"
    assert world.store.state.fingerprint == PRINT.sha256
    assert world.api.creates_received == 1


def test_a_rerun_reattaches_without_calling_the_api() -> None:
    world = World()
    world.submit()
    checkpoints_before = world.faults.names[:]
    assert world.submit() == SubmitResult("msgbatch_000", "reattached", 3)
    new = world.faults.names[len(checkpoints_before) :]
    assert new == ["read state"]
    assert world.api.creates_received == 1


def test_a_shard_changed_after_submit_is_refused() -> None:
    world = World()
    world.submit()
    world.fingerprint = ShardFingerprint("0" * 64, 3, 99)
    with pytest.raises(AfterSubmitError, match=r"changed after it was submitted as batch msgbatch_000"):
        world.submit()
    assert world.api.creates_received == 1


def test_a_shard_that_does_not_match_its_descriptor_is_not_sent() -> None:
    world = World(fingerprint=ShardFingerprint("f" * 64, 2, 70))
    with pytest.raises(InputError, match="holds 2 requests in a 70-byte body"):
        world.submit()
    assert world.api.creates_received == 0
    assert world.store.writes == []


def count_checkpoints_of_a_clean_submit() -> int:
    world = World()
    world.submit()
    return world.faults.seen


@pytest.mark.parametrize("crash_at", range(1, count_checkpoints_of_a_clean_submit() + 1))
def test_a_crash_at_any_point_never_leads_to_a_second_create(crash_at: int) -> None:
    world = World()
    world.faults.crash_at = crash_at
    with pytest.raises(WorkerKilled):
        world.submit()
    crashed_at = world.faults.names[-1]
    result = world.submit_until_done()
    assert world.api.creates_received == 1, f"crash at {crashed_at!r} led to a second create"
    assert result.batch_id == world.api.batches[0]["id"]
    assert world.store.state is not None
    assert world.store.state.status == "submitted"
    assert world.store.state.batch_id == result.batch_id
    # Once recorded, any number of further runs re-attach.
    assert world.submit().action == "reattached"
    assert world.api.creates_received == 1


def test_the_crash_points_cover_intent_create_answer_and_state() -> None:
    world = World()
    world.submit()
    assert world.faults.names == [
        "read state",
        "list (page 1)",
        "write intent: before",
        "write intent: after",
        "create: before it reaches the API",
        "create: batch made, answer on its way",
        "write submitted: before",
        "write submitted: after",
    ]


@pytest.mark.parametrize("first_crash", range(1, 9))
@pytest.mark.parametrize("second_crash", range(1, 12))
def test_two_crashes_in_a_row_still_create_once(first_crash: int, second_crash: int) -> None:
    world = World()
    world.faults.crash_at = first_crash
    with pytest.raises(WorkerKilled):
        world.submit()
    world.faults.seen = 0
    world.faults.crash_at = second_crash
    result = world.submit_until_done()
    assert world.api.creates_received == 1
    assert world.store.state is not None
    assert world.store.state.batch_id == result.batch_id


@pytest.mark.parametrize("mode", ["after_create", "refused_after_create"])
def test_a_lost_create_answer_is_recovered_on_the_spot(mode: str) -> None:
    world = World()
    world.api.lose_next = mode
    result = world.submit()
    assert result == SubmitResult("msgbatch_000", "recovered", 3)
    assert world.api.creates_received == 1
    assert world.store.state is not None
    assert world.store.state.batch_id == "msgbatch_000"


def test_a_refused_create_is_recorded_as_failed_and_the_retry_creates_once() -> None:
    world = World()
    world.api.lose_next = "refused"
    with pytest.raises(AfterSubmitError, match=r"was refused .* and made no batch") as raised:
        world.submit()
    assert isinstance(raised.value.__cause__, CreateRefused)
    assert world.store.state is not None
    assert world.store.state.status == "failed"
    assert world.store.state.failure == "HTTP 529 overloaded_error"
    assert world.submit().action == "created"
    assert world.api.creates_received == 2
    assert len(world.api.batches) == 1


def test_a_create_without_an_answer_and_no_batch_keeps_the_intent_for_the_retry() -> None:
    world = World()
    world.api.lose_next = "before_create"
    with pytest.raises(AfterSubmitError, match="no batch for it is listed yet") as raised:
        world.submit()
    assert isinstance(raised.value.__cause__, ServerError)
    assert world.store.state is not None
    assert world.store.state.status == "intent"
    assert world.submit().action == "created"
    assert world.api.creates_received == 1


def test_a_definite_refusal_is_raised_as_is_and_recorded() -> None:
    world = World()

    def refuse() -> dict[str, Any]:
        raise ConnectionConfigError("connection 'x' was rejected: set a valid API key")

    world.api.create_batch = refuse  # type: ignore[method-assign]
    with pytest.raises(ConnectionConfigError):
        world.submit()
    assert "list (page 100)" not in world.faults.names
    assert world.store.state is not None
    assert world.store.state.status == "failed"
    assert "ConnectionConfigError" in str(world.store.state.failure)


def lost_intent(world: World, *, count: int = 3, newest_before: str | None = None) -> SubmitState:
    """An intent whose create's answer was never recorded."""
    state = SubmitState(
        shard_uri=SHARD.uri,
        fingerprint=PRINT.sha256,
        request_count=count,
        body_bytes=99,
        intent_at=format_utc(world.clock()),
        status="intent",
        newest_batch_before=newest_before,
    )
    world.store.state = state
    return state


def test_recovery_skips_batches_recorded_by_sibling_shards() -> None:
    world = World()
    lost_intent(world)
    first = world.api.add_batch(3)
    mine = world.api.add_batch(3)
    third = world.api.add_batch(3)
    world.store.others = {
        "round-0/shard-00001.state.json": lost_intent(World()).submitted(first["id"], None),
        "round-0/shard-00002.state.json": lost_intent(World()).submitted(third["id"], None),
    }
    assert world.submit() == SubmitResult(mine["id"], "recovered", 3)
    assert world.api.creates_received == 0


def test_recovery_ignores_other_request_counts_and_batches_before_the_intent() -> None:
    world = World()
    older = world.api.add_batch(3)
    lost_intent(world, newest_before=older["id"])
    world.api.add_batch(4)
    mine = world.api.add_batch(3)
    assert world.submit().batch_id == mine["id"]


def test_recovery_falls_back_to_the_clock_when_the_newest_batch_is_gone() -> None:
    world = World()
    world.api.add_batch(3, created_at=START - timedelta(hours=1))
    lost_intent(world, newest_before="msgbatch_deleted")
    assert world.submit().action == "created"  # an hour before the intent: not this shard's
    assert world.api.creates_received == 1


def test_recovery_tolerates_an_api_clock_behind_ours() -> None:
    world = World()
    lost_intent(world)
    # The API's clock is 5 minutes behind: its batch looks older than the intent, within the margin.
    skewed = world.api.add_batch(3, created_at=START - timedelta(minutes=5))
    assert world.submit() == SubmitResult(skewed["id"], "recovered", 3)
    assert world.api.creates_received == 0


def test_no_candidate_means_the_create_never_happened() -> None:
    world = World()
    lost_intent(world)
    world.api.add_batch(5)
    result = world.submit()
    assert result.action == "created"
    assert world.api.creates_received == 1
    assert [state.status for state in world.store.writes] == ["intent", "submitted"]


def test_several_candidates_stop_with_the_list_and_the_remedy() -> None:
    world = World()
    lost_intent(world)
    one, two = world.api.add_batch(3), world.api.add_batch(3)
    with pytest.raises(SubmitRecoveryError) as raised:
        world.submit()
    message = str(raised.value)
    assert one["id"] in message
    assert two["id"] in message
    assert one["created_at"] in message
    assert "3 requests" in message
    assert world.store.location in message
    assert '"status": "submitted"' in message
    assert "cancel the extra batches" in message
    assert world.api.creates_received == 0


def test_a_candidate_a_sibling_in_flight_could_own_waits_for_the_sibling() -> None:
    world = World()
    lost_intent(world)
    sibling = lost_intent(World())
    world.store.others = {"round-0/shard-00001.state.json": sibling}
    theirs = world.api.add_batch(3)
    with pytest.raises(SubmitRecoveryError, match=r"shard-00001\.state\.json"):
        world.submit()
    assert world.api.creates_received == 0
    # The sibling records its batch: the candidate is theirs, so this shard's create never happened.
    world.store.others["round-0/shard-00001.state.json"] = sibling.submitted(theirs["id"], None)
    assert world.submit().action == "created"
    assert world.api.creates_received == 1


def test_a_sibling_in_flight_with_another_size_does_not_block() -> None:
    world = World()
    lost_intent(world)
    world.store.others = {"round-0/shard-00001.state.json": lost_intent(World(), count=7)}
    mine = world.api.add_batch(3)
    assert world.submit().batch_id == mine["id"]


def test_an_adopted_batch_of_a_changed_shard_is_recorded_then_refused() -> None:
    world = World()
    lost_intent(world)
    batch = world.api.add_batch(3)
    world.fingerprint = ShardFingerprint("0" * 64, 3, 99)
    with pytest.raises(AfterSubmitError, match="changed after it was submitted"):
        world.submit()
    assert world.store.state is not None
    assert world.store.state.batch_id == batch["id"]
    assert world.store.state.fingerprint == PRINT.sha256


def shards_of_one_workspace(count: int) -> list[World]:
    worlds = [World() for _ in range(count)]
    for index, world in enumerate(worlds):
        world.api = worlds[0].api
        world.clock = worlds[0].clock
        world.store.faults = world.faults
        world.api.faults = world.faults
        world.store.location = f"round-0/shard-{index:05d}.state.json"
        world.store.others = _LiveSiblings(world, worlds)  # type: ignore[assignment]
    return worlds


def test_shards_of_one_size_find_their_own_batch_after_a_crash() -> None:
    worlds = shards_of_one_workspace(4)
    api = worlds[0].api
    api.faults = worlds[0].faults
    worlds[0].faults.crash_at = 6  # shard 0 dies once its batch exists, before hearing the answer
    with pytest.raises(WorkerKilled):
        worlds[0].submit()
    others = []
    for world in worlds[1:]:
        api.faults = world.faults
        others.append(world.submit())
    api.faults = worlds[0].faults
    mine = worlds[0].submit()
    assert mine == SubmitResult("msgbatch_000", "recovered", 3)
    assert [result.action for result in others] == ["created"] * 3
    assert api.creates_received == 4
    assert len({mine.batch_id, *(result.batch_id for result in others)}) == 4


def test_two_shards_of_one_size_both_losing_their_answer_need_help() -> None:
    worlds = shards_of_one_workspace(2)
    api = worlds[0].api
    for world in worlds:
        api.faults = world.faults
        world.faults.crash_at = 6
        with pytest.raises(WorkerKilled):
            world.submit()
    api.faults = worlds[0].faults
    with pytest.raises(SubmitRecoveryError, match=r"one of 2 batches .*msgbatch_001 .*msgbatch_000 "):
        worlds[0].submit()
    api.faults = worlds[1].faults  # its intent came after batch 000 was listed: only 001 can be its
    with pytest.raises(SubmitRecoveryError, match=r"msgbatch_001 .* in flight: round-0/shard-00000"):
        worlds[1].submit()
    assert api.creates_received == 2


def test_a_refused_sibling_does_not_block_a_shard_whose_answer_was_lost() -> None:
    worlds = shards_of_one_workspace(2)
    api = worlds[0].api
    api.faults = worlds[0].faults
    api.lose_next = "refused"
    with pytest.raises(AfterSubmitError):
        worlds[0].submit()
    api.faults = worlds[1].faults
    api.lose_next = "after_create"
    assert worlds[1].submit() == SubmitResult("msgbatch_000", "recovered", 3)
    api.faults = worlds[0].faults
    assert worlds[0].submit() == SubmitResult("msgbatch_001", "created", 3)
    assert len(api.batches) == 2


class _LiveSiblings(dict):  # type: ignore[type-arg]
    """The other shards' states as they are now."""

    def __init__(self, me: World, everyone: list[World]) -> None:
        super().__init__()
        self.me, self.everyone = me, everyone

    def items(self) -> Any:
        return [
            (w.store.location, w.store.state) for w in self.everyone if w is not self.me and w.store.state
        ]


def requests_file(count: int) -> list[bytes]:
    return [
        orjson.dumps({"custom_id": f"r{i}", "params": {"model": "m", "x": "é" * i}}) for i in range(count)
    ]


def test_the_body_is_the_lines_joined_exactly() -> None:
    lines = requests_file(5)
    data = b"\n".join(lines) + b"\n"
    size = batch_body_size(sum(map(len, lines)), len(lines))
    chunks = [data[i : i + 10] for i in range(0, len(data), 10)]
    body = b"".join(iter_batch_body(chunks, request_count=5, body_bytes=size, source="s"))
    assert len(body) == size
    assert orjson.loads(body) == {"requests": [orjson.loads(line) for line in lines]}


def test_a_large_body_comes_in_blocks_of_about_a_megabyte() -> None:
    lines = [b'{"custom_id":"r%d","params":{"t":"%s"}}' % (i, b"x" * 5000) for i in range(1000)]
    size = batch_body_size(sum(map(len, lines)), len(lines))
    blocks = list(iter_batch_body([b"\n".join(lines)], request_count=1000, body_bytes=size, source="s"))
    assert len(blocks) > 3
    assert max(map(len, blocks)) < (1 << 20) + 6000
    assert sum(map(len, blocks)) == size


@pytest.mark.parametrize(("count", "extra"), [(4, 0), (6, 0), (5, -1), (5, 1)])
def test_a_body_that_does_not_match_the_declared_size_stops_before_overflowing(
    count: int, extra: int
) -> None:
    lines = requests_file(5)
    size = batch_body_size(sum(map(len, lines)), len(lines)) + extra
    produced: list[bytes] = []
    body = iter_batch_body([b"\n".join(lines)], request_count=count, body_bytes=size, source="s")
    with pytest.raises(InputError, match="does not match its descriptor"):
        produced.extend(body)
    assert sum(map(len, produced)) <= size
