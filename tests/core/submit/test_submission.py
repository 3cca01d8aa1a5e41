"""The exactly-once submit: every crash point, lost answers, and adoption only with proof."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from airflow_claude_batch.core.run.claims import Claim
from airflow_claude_batch.core.submit.pacing import BEHIND_MARGIN, STALE_AFTER, CreateThrottled
from airflow_claude_batch.core.submit.recovery import ResultsReads
from airflow_claude_batch.core.submit.state import ShardFingerprint, SubmitState, format_utc, parse_utc
from airflow_claude_batch.core.submit.submission import submit_shard
from airflow_claude_batch.core.submit.submit_inputs import (
    CreateOutcomeUnknown,
    CreateRefused,
    ShardToSubmit,
    SubmitResult,
    SubmitTiming,
    SubmitWait,
)
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    ConnectionConfigError,
    InputError,
    PacingTimeoutError,
    ResultsUnavailableError,
    SubmitRecoveryError,
)

START = datetime(2026, 1, 31, 18, 0, tzinfo=timezone.utc)
SHARD = ShardToSubmit(
    uri="file:///runs/d/r/p/round-0/shard-00000.requests.jsonl", request_count=3, body_bytes=99
)
PRINT = ShardFingerprint(sha256="f" * 64, request_count=3, body_bytes=99, model="claude-sonnet-4-6")
SETTLE = timedelta(minutes=20)
RECHECK = timedelta(minutes=5)


class WorkerKilled(BaseException):
    """The worker process dies: nothing after this point of the attempt runs."""


class ServerGone(Exception):
    """A dropped connection or a timeout: the caller cannot tell whether the batch was made."""


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
    """The workspace as the submit sees it; ``batches`` oldest first, listed newest first.

    A batch holds custom_ids (a created one: three records and the marker sent with it); its results
    can be read only once it has ended, as with the real API.
    """

    faults: Faults
    clock: Clock
    batches: list[dict[str, Any]] = field(default_factory=list)
    contents: dict[str, list[str]] = field(default_factory=dict)
    creates_received: int = 0
    results_read: list[str] = field(default_factory=list)
    # "after_create": made, then the connection drops (unknown); "before_create": dropped before the
    # API made anything (unknown); "rejected": 413, nothing made; "throttled": 429 (queue full, try
    # again after ``retry_after``), nothing made; "server_error": 500, nothing made;
    # "server_error_after_create": 500 after making it; "late": the client gives up, the API makes the
    # batch on the next list call (an API finishing work its client stopped waiting for).
    lose_next: str | None = None
    late_marker: bytes | None = None
    throttled: int = 0  # further creates refused with 429 after lose_next's
    retry_after: float | None = 30.0
    # Reads of ended batches' results that go wrong first: "short" ends cleanly after the first line
    # (before the marker), "missing" answers 404 (results that lag the batch's status).
    bad_reads: list[str] = field(default_factory=list)

    def add_batch(self, custom_ids: list[str], *, created_at: datetime | None = None) -> dict[str, Any]:
        batch_id = f"msgbatch_{len(self.batches):03d}"
        batch = {
            "id": batch_id,
            "created_at": format_utc(created_at or self.clock()),
            "processing_status": "in_progress",
            "request_counts": {"processing": len(custom_ids), "succeeded": 0, "errored": 0},
        }
        self.batches.append(batch)
        self.contents[batch_id] = list(custom_ids)
        return batch

    def end_all(self) -> None:
        for batch in self.batches:
            batch["processing_status"] = "ended"

    def _make(self, marker: bytes) -> dict[str, Any]:
        return self.add_batch(["r0", "r1", "r2", orjson.loads(marker)["custom_id"]])

    def create_batch(self, marker: bytes) -> dict[str, Any]:
        self.faults.checkpoint("create: before it reaches the API")
        mode, self.lose_next = self.lose_next, None
        if mode == "before_create":
            raise ServerGone("connection reset before the API read the body")
        self.creates_received += 1
        if mode == "rejected":
            raise CreateRefused("HTTP 413 request_too_large")
        if mode == "throttled" or self.throttled:
            self.throttled = max(self.throttled - (mode != "throttled"), 0)
            raise CreateThrottled(
                "HTTP 429 rate_limit_error: Number of batch requests in the queue would exceed your limit",
                self.retry_after,
            )
        if mode == "server_error":
            raise CreateOutcomeUnknown("HTTP 500 api_error")
        if mode == "late":
            self.late_marker = marker
            raise ServerGone("timed out")
        batch = self._make(marker)
        self.faults.checkpoint("create: batch made, answer on its way")
        if mode == "after_create":
            raise ServerGone("connection dropped before the answer")
        if mode == "server_error_after_create":
            raise CreateOutcomeUnknown("HTTP 500 api_error")
        return dict(batch)

    def iter_batches(self, page_size: int) -> Iterator[dict[str, Any]]:
        self.faults.checkpoint(f"list (page {page_size})")
        if self.late_marker is not None:
            self._make(self.late_marker)
            self.late_marker = None
        yield from (dict(batch) for batch in reversed(self.batches))

    def result_ids(self, batch_id: str) -> Iterator[str]:
        batch = next(b for b in self.batches if b["id"] == batch_id)
        assert batch["processing_status"] == "ended", "results are read only from ended batches"
        self.results_read.append(batch_id)
        bad = self.bad_reads.pop(0) if self.bad_reads else None
        if bad == "missing":
            raise ResultsUnavailableError(f"the results of batch {batch_id} are not available (not found)")
        yield from self.contents[batch_id][:1] if bad == "short" else self.contents[batch_id]


@dataclass
class FakeStore:
    faults: Faults
    location: str = "p/round-0/shard-00000.state.json"
    state: SubmitState | None = None
    writes: list[SubmitState] = field(default_factory=list)

    def read(self) -> SubmitState | None:
        self.faults.checkpoint("read state")
        return self.state

    def write(self, state: SubmitState) -> None:
        self.faults.checkpoint(f"write {state.status}: before")
        self.state = state
        self.writes.append(state)
        self.faults.checkpoint(f"write {state.status}: after")


@dataclass
class FakeClaims:
    faults: Faults
    claims: dict[str, Claim] = field(default_factory=dict)

    def read(self, batch_id: str) -> Claim | None:
        return self.claims.get(batch_id)

    def write(self, claim: Claim) -> None:
        self.faults.checkpoint("write claim: before")
        self.claims[claim.batch_id] = claim
        self.faults.checkpoint("write claim: after")


@dataclass
class World:
    """One shard of one run; several worlds may share the workspace (``api``) and the claims index."""

    faults: Faults = field(default_factory=Faults)
    clock: Clock = field(default_factory=Clock)
    fingerprint: ShardFingerprint = PRINT
    shard: ShardToSubmit = SHARD
    line: Any = None
    pacing_deadline: datetime | None = None
    slept: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = FakeApi(self.faults, self.clock)
        self.store = FakeStore(self.faults)
        self.claims = FakeClaims(self.faults)

    def join(self, other: World, location: str, uri: str) -> World:
        """Make this world another shard of ``other``'s workspace and storage root."""
        self.api, self.claims, self.clock = other.api, other.claims, other.clock
        self.store.location = location
        self.shard = ShardToSubmit(uri=uri, request_count=3, body_bytes=99)
        return self

    def submit(self) -> SubmitResult | SubmitWait:
        self.api.faults = self.claims.faults = self.faults
        return submit_shard(
            self.shard,
            api=self.api,
            store=self.store,
            claims=self.claims,
            fingerprint=lambda: self.fingerprint,
            timing=SubmitTiming(
                now=self.clock,
                settle_after=SETTLE,
                recheck=RECHECK,
                pacing_deadline=self.pacing_deadline,
                pacing_timeout=timedelta(hours=1),
                reads=ResultsReads(delays=(1.0, 2.0, 4.0), sleep=self.slept.append),
                sleep=self.slept.append,
            ),
            line=self.line,
        )

    def submit_until_done(self, attempts: int = 8, *, end_batches: bool = True) -> SubmitResult:
        """Run attempts the way task retries and deferred waits do, until one returns a batch."""
        for _ in range(attempts):
            try:
                outcome = self.submit()
            except (WorkerKilled, AfterSubmitError):
                continue
            if isinstance(outcome, SubmitResult):
                return outcome
            self.clock.moment = max(self.clock.moment, outcome.until)
            if end_batches:
                self.api.end_all()
        raise AssertionError("the submit never succeeded")


def created(world: World, index: int = 0) -> dict[str, Any]:
    return world.api.batches[index]


def markers_in(world: World, batch_id: str) -> list[str]:
    return [cid for cid in world.api.contents[batch_id] if cid.startswith("acb-marker-")]


def test_first_submit_writes_intent_creates_once_with_a_marker_and_claims_the_batch() -> None:
    world = World()
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.batch_id, result.action, result.request_count) == ("msgbatch_000", "created", 3)
    assert [state.status for state in world.store.writes] == ["intent", "submitted"]
    intent, done = world.store.writes
    assert intent.intent_at < created(world)["created_at"]
    assert intent.marker_id is not None
    assert markers_in(world, "msgbatch_000") == [intent.marker_id] == [result.marker_id]
    assert intent.settle_at == format_utc(world.store.writes[0].intent_time + SETTLE)
    assert done.batch_id == "msgbatch_000"
    assert world.claims.claims["msgbatch_000"].owner == world.store.location
    assert world.api.creates_received == 1


def test_every_attempt_and_every_shard_sends_its_own_marker() -> None:
    first, second = World(), World()
    second.join(first, "p/round-0/shard-00001.state.json", SHARD.uri.replace("00000", "00001"))
    first.submit()
    second.submit()
    assert len({markers_in(first, "msgbatch_000")[0], markers_in(first, "msgbatch_001")[0]}) == 2


def test_a_rerun_reattaches_without_calling_the_api() -> None:
    world = World()
    world.submit()
    before = len(world.faults.names)
    again = world.submit()
    assert isinstance(again, SubmitResult)
    assert again.action == "reattached"
    assert world.faults.names[before:] == ["read state"]
    assert world.api.creates_received == 1


def test_a_shard_changed_after_submit_is_refused() -> None:
    world = World()
    world.submit()
    world.fingerprint = ShardFingerprint("0" * 64, 3, 99, "claude-sonnet-4-6")
    with pytest.raises(AfterSubmitError, match=r"changed after it was submitted as batch msgbatch_000"):
        world.submit()
    assert world.api.creates_received == 1


def test_a_shard_that_does_not_match_its_descriptor_is_not_sent() -> None:
    world = World(fingerprint=ShardFingerprint("f" * 64, 2, 70, "claude-sonnet-4-6"))
    with pytest.raises(InputError, match="holds 2 requests in a 70-byte body"):
        world.submit()
    assert world.api.creates_received == 0
    assert world.store.writes == []


def count_checkpoints_of_a_clean_submit() -> int:
    world = World()
    world.submit()
    return world.faults.seen


def test_the_crash_points_cover_intent_create_answer_claim_and_state() -> None:
    world = World()
    world.submit()
    assert world.faults.names == [
        "read state",
        "list (page 20)",
        "write intent: before",
        "write intent: after",
        "create: before it reaches the API",
        "create: batch made, answer on its way",
        "write claim: before",
        "write claim: after",
        "write submitted: before",
        "write submitted: after",
    ]


@pytest.mark.parametrize("crash_at", range(1, count_checkpoints_of_a_clean_submit() + 1))
def test_a_crash_at_any_point_never_leads_to_a_second_create(crash_at: int) -> None:
    world = World()
    world.faults.crash_at = crash_at
    with pytest.raises(WorkerKilled):
        world.submit()
    crashed_at = world.faults.names[-1]
    result = world.submit_until_done()
    assert world.api.creates_received == 1, f"crash at {crashed_at!r} led to a second create"
    assert result.batch_id == created(world)["id"]
    assert world.store.state is not None
    assert world.store.state.status == "submitted"
    assert world.store.state.batch_id == result.batch_id
    assert world.claims.claims[result.batch_id].owner == world.store.location
    again = world.submit()
    assert isinstance(again, SubmitResult)
    assert again.action == "reattached"


@pytest.mark.parametrize("first_crash", range(1, 11))
@pytest.mark.parametrize("second_crash", range(1, 14))
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


@pytest.mark.parametrize("mode", ["after_create", "server_error_after_create"])
def test_a_lost_answer_waits_for_the_batch_to_end_and_adopts_it_by_its_marker(mode: str) -> None:
    world = World()
    world.api.lose_next = mode
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait), "a running candidate cannot be proven yet"
    assert "msgbatch_000" in waiting.reason
    assert world.api.results_read == []
    world.api.end_all()
    world.clock.moment = waiting.until
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.batch_id, result.action) == ("msgbatch_000", "recovered")
    assert result.marker_id == markers_in(world, "msgbatch_000")[0]
    assert world.api.creates_received == 1
    assert world.claims.claims["msgbatch_000"].owner == world.store.location


def test_a_refused_create_never_adopts_even_when_another_batch_of_its_size_appears() -> None:
    """The 429 race: another run's same-size batch lands right after this shard's create was refused."""
    world = World()
    world.api.lose_next = "throttled"
    other = World()
    other.join(world, "other/round-0/shard-00000.state.json", "file:///runs/d/other/p/s0")
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait)
    assert waiting.capacity
    refused = world.store.state
    assert refused is not None
    assert (refused.status, refused.refusals) == ("failed", 1)
    assert str(refused.failure).startswith("HTTP 429 rate_limit_error")
    other.submit()  # another run's batch of the same size, claimed by its shard
    world.clock.moment = waiting.until
    mine = world.submit()
    assert isinstance(mine, SubmitResult)
    assert (mine.action, mine.batch_id) == ("created", "msgbatch_001")
    assert world.claims.claims["msgbatch_001"].owner == world.store.location
    assert world.api.results_read == [], "the other batch was set aside by its claim, never read"


def test_a_refused_create_never_adopts_an_unclaimed_batch_of_its_size_without_its_marker() -> None:
    """The 429 race with a batch nobody claimed here: it is read once it ends, and set aside."""
    world = World()
    world.api.lose_next = "throttled"
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait)
    world.api.add_batch(["x0", "x1", "x2", "acb-marker-someone-else"])  # another root's batch
    world.clock.moment = waiting.until
    still = world.submit()
    assert isinstance(still, SubmitWait), "a running candidate may not be passed by"
    assert not still.capacity
    world.api.end_all()
    world.clock.moment = still.until
    mine = world.submit()
    assert isinstance(mine, SubmitResult)
    assert (mine.action, mine.batch_id) == ("created", "msgbatch_001")
    assert world.api.results_read == ["msgbatch_000"]
    assert world.store.state is not None
    assert world.store.state.not_ours == ("msgbatch_000",)


def test_a_create_refused_for_now_waits_for_retry_after_and_is_sent_again_once() -> None:
    world = World()
    world.api.lose_next = "throttled"
    world.api.throttled = 1  # the first retry is refused too
    first = world.submit()
    assert isinstance(first, SubmitWait)
    assert first.capacity
    assert "queue would exceed your limit" in first.reason
    refused = world.store.state
    assert refused is not None
    assert first.until == parse_utc(str(refused.retry_at))
    assert first.until - parse_utc(str(refused.settle_at)) == timedelta(seconds=30)  # its retry-after
    early = world.submit()  # the triggerer fired early, or a retry came: nothing is sent
    assert isinstance(early, SubmitWait)
    assert world.api.creates_received == 1
    world.clock.moment = first.until
    second = world.submit()
    assert isinstance(second, SubmitWait)
    assert world.store.state is not None
    assert world.store.state.refusals == 2
    assert world.store.state.marker_id != refused.marker_id, "each attempt sends its own marker"
    world.clock.moment = second.until
    done = world.submit()
    assert isinstance(done, SubmitResult)
    assert done.action == "created"
    assert world.api.creates_received == 3
    assert len(world.api.batches) == 1
    # The refused attempts' markers were proven absent before each new create: not carried on.
    assert world.store.state.earlier_markers == ()
    assert world.store.state.refusals == 2


def test_a_refused_attempt_whose_marker_is_found_after_all_is_adopted_not_sent_again() -> None:
    """If a 429 was wrong and the batch exists, the lookup before the next create adopts it."""
    world = World()
    world.api.lose_next = "throttled"
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait)
    refused = world.store.state
    assert refused is not None
    world.api.add_batch(["r0", "r1", "r2", str(refused.marker_id)])
    world.api.end_all()
    world.clock.moment = waiting.until
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.action, result.marker_id) == ("recovered", refused.marker_id)
    assert world.api.creates_received == 1


def test_without_retry_after_the_wait_backs_off_and_grows() -> None:
    world = World()
    world.api.retry_after = None
    world.api.lose_next = "throttled"
    world.api.throttled = 2
    waits = []
    for _ in range(3):
        outcome = world.submit()
        assert isinstance(outcome, SubmitWait)
        assert world.store.state is not None
        waits.append(outcome.until - parse_utc(str(world.store.state.settle_at)))
        world.clock.moment = outcome.until
    assert timedelta(seconds=22) <= waits[0] <= timedelta(seconds=30)
    assert timedelta(seconds=45) <= waits[1] <= timedelta(seconds=60)
    assert timedelta(seconds=90) <= waits[2] <= timedelta(seconds=120)


def test_a_wait_for_capacity_past_the_deadline_fails_saying_what_to_do() -> None:
    world = World()
    world.api.lose_next = "throttled"
    world.api.throttled = 1
    first = world.submit()
    assert isinstance(first, SubmitWait)
    world.pacing_deadline = first.until + timedelta(seconds=10)
    world.clock.moment = first.until
    second = world.submit()  # refused again: the next try would be after the deadline
    assert isinstance(second, SubmitWait)
    assert second.until == world.pacing_deadline
    world.clock.moment = second.until
    world.api.throttled = 1
    with pytest.raises(PacingTimeoutError, match=r"raise pacing_timeout.*clear this task") as raised:
        world.submit()
    assert "queue would exceed your limit" in str(raised.value)
    assert len(world.api.batches) == 0


def test_a_definite_4xx_refusal_still_fails_the_attempt_and_adopts_nothing() -> None:
    world = World()
    world.api.lose_next = "rejected"
    with pytest.raises(
        AfterSubmitError, match=r"was refused \(HTTP 413 request_too_large\) and made no batch"
    ):
        world.submit()
    assert world.store.state is not None
    assert (world.store.state.status, world.store.state.retry_at) == ("failed", None)
    result = world.submit()  # the task's retry
    assert isinstance(result, SubmitResult)
    assert world.api.creates_received == 2


@dataclass
class FakeLine:
    """The round's shards as the submit sees them: the states of the lower shards."""

    lower: dict[int, SubmitState | None]
    round_index: int = 0

    def ahead(self, now: datetime) -> Any:
        from airflow_claude_batch.core.submit.pacing import Ahead, waits_for_capacity

        for index in sorted(self.lower):
            state = self.lower[index]
            if state is not None and state.retry_at is not None and waits_for_capacity(state, now):
                return Ahead(index, parse_utc(state.retry_at), state.failure)
        return None


def test_a_shard_waits_behind_a_lower_shard_that_waits_for_capacity() -> None:
    low = World()
    low.api.lose_next = "throttled"
    low_wait = low.submit()
    assert isinstance(low_wait, SubmitWait)
    high = World().join(low, "p/round-0/shard-00001.state.json", SHARD.uri.replace("00000", "00001"))
    high.line = FakeLine({0: low.store.state})
    behind = high.submit()
    assert isinstance(behind, SubmitWait)
    assert behind.capacity
    assert "shard 0 of round 0 waits for capacity" in behind.reason
    assert behind.until == low_wait.until + BEHIND_MARGIN
    assert high.api.creates_received == 1, "the higher shard sent nothing"
    assert high.store.state is None
    low.clock.moment = low_wait.until
    assert isinstance(low.submit(), SubmitResult)  # the lower shard goes first
    high.line = FakeLine({0: low.store.state})
    assert isinstance(high.submit(), SubmitResult)
    assert [b["id"] for b in low.api.batches] == ["msgbatch_000", "msgbatch_001"]
    assert low.store.state is not None
    assert low.store.state.batch_id == "msgbatch_000"


def test_a_refused_shard_whose_time_came_waits_behind_a_lower_one_without_calling_the_api() -> None:
    high = World()
    high.shard = ShardToSubmit(uri=SHARD.uri.replace("00000", "00001"), request_count=3, body_bytes=99)
    high.api.lose_next = "throttled"
    high.api.retry_after = 10.0
    first = high.submit()
    assert isinstance(first, SubmitWait)
    low = World().join(high, "p/round-0/shard-00000.state.json", SHARD.uri)
    low.api.lose_next = "throttled"
    low.api.retry_after = 60.0
    low_wait = low.submit()
    assert isinstance(low_wait, SubmitWait)
    high.line = FakeLine({0: low.store.state})
    high.clock.moment = first.until
    calls = len(high.faults.names)
    behind = high.submit()
    assert isinstance(behind, SubmitWait)
    assert "shard 0 of round 0 waits for capacity" in behind.reason
    assert behind.until == low_wait.until + BEHIND_MARGIN
    assert not [name for name in high.faults.names[calls:] if name.startswith("list")]
    assert high.api.creates_received == 2


def test_a_lower_shard_that_has_not_started_or_stopped_waiting_blocks_nobody() -> None:
    stopped = SubmitState(
        shard_uri="s0",
        fingerprint="0" * 64,
        request_count=3,
        body_bytes=99,
        intent_at=format_utc(START),
        status="failed",
        failure="HTTP 429 rate_limit_error",
        retry_at=format_utc(START),
        refusals=4,
    )
    world = World()
    world.clock.moment = START + STALE_AFTER  # its next try is overdue: its task stopped waiting
    world.line = FakeLine({0: None, 1: stopped})
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"


def test_a_server_error_keeps_the_intent_and_creates_again_only_after_it_settles() -> None:
    """A 5xx (a gateway's 504 included) proves nothing: the create may land later."""
    world = World()
    world.api.lose_next = "server_error"
    with pytest.raises(AfterSubmitError, match="no batch for it is listed yet; the intent is kept"):
        world.submit()
    intent = world.store.state
    assert intent is not None
    assert (intent.status, intent.settle_at) == ("intent", format_utc(intent.intent_time + SETTLE))
    early = world.submit()  # the task's retry, before the create can no longer land
    assert isinstance(early, SubmitWait)
    assert world.api.creates_received == 1
    world.clock.moment = early.until
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert world.api.creates_received == 2
    assert world.store.writes[-1].earlier_markers == (intent.marker_id,)


def test_a_server_error_whose_create_lands_later_is_adopted_never_sent_twice() -> None:
    """The gateway answers 504; the API makes the batch a moment later."""
    world = World()
    world.api.lose_next = "server_error"
    with pytest.raises(AfterSubmitError):
        world.submit()
    intent = world.store.state
    assert intent is not None
    world.api.add_batch(["r0", "r1", "r2", str(intent.marker_id)])  # the create lands
    result = world.submit_until_done()
    assert (result.batch_id, result.action) == ("msgbatch_000", "recovered")
    assert len(world.api.batches) == 1


def test_an_unanswered_create_waits_until_it_can_no_longer_land_before_creating_again() -> None:
    world = World()
    world.api.lose_next = "before_create"
    with pytest.raises(AfterSubmitError, match="no batch for it is listed yet; the intent is kept"):
        world.submit()  # the attempt ends; its retry follows the intent up
    intent = world.store.state
    assert intent is not None
    assert intent.status == "intent"
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait)
    assert waiting.nothing_listed
    assert "may still make a batch" in waiting.reason
    assert waiting.until == intent.intent_time + SETTLE
    early = world.submit()  # a retry before then still does not create
    assert isinstance(early, SubmitWait)
    assert world.api.creates_received == 0
    world.clock.moment = waiting.until
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert world.api.creates_received == 1
    assert world.store.writes[-1].earlier_markers == (intent.marker_id,)


def test_a_slow_create_landing_after_the_client_gave_up_is_adopted_never_sent_again() -> None:
    world = World()
    world.api.lose_next = "late"
    result = world.submit_until_done()
    assert result.action == "recovered"
    assert world.api.creates_received == 1
    assert len(world.api.batches) == 1


def test_a_definite_refusal_is_raised_as_is_and_recorded() -> None:
    world = World()

    def refuse(marker: bytes) -> dict[str, Any]:
        raise ConnectionConfigError("connection 'x' was rejected: set a valid API key")

    world.api.create_batch = refuse  # type: ignore[method-assign]
    with pytest.raises(ConnectionConfigError):
        world.submit()
    assert "list (page 100)" not in world.faults.names
    assert world.store.state is not None
    assert world.store.state.status == "failed"
    assert "ConnectionConfigError" in str(world.store.state.failure)


def lost_intent(world: World, *, newest_before: str | None = None) -> SubmitState:
    """An intent whose create's answer was never recorded, old enough to have settled."""
    moment = world.clock()
    state = SubmitState(
        shard_uri=world.shard.uri,
        fingerprint=PRINT.sha256,
        request_count=3,
        body_bytes=99,
        intent_at=format_utc(moment),
        status="intent",
        newest_batch_before=newest_before,
        intent_id="i1",
        marker_id="acb-marker-mine",
        settle_at=format_utc(moment),
    )
    world.store.state = state
    return state


def test_a_same_size_batch_claimed_by_another_run_is_set_aside_at_once() -> None:
    world = World()
    lost_intent(world)
    theirs = world.api.add_batch(["r0", "r1", "r2", "acb-marker-theirs"])
    world.claims.claims[theirs["id"]] = Claim(theirs["id"], "other-run/state.json", "acb-marker-theirs", "t")
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert world.api.results_read == []


def test_an_ended_batch_without_the_marker_is_not_ours_and_read_only_once() -> None:
    """Two runs over the same ids with other prompts: same size, same custom_ids, another marker."""
    world = World()
    lost_intent(world)
    theirs = world.api.add_batch(["r0", "r1", "r2", "acb-marker-theirs"])
    theirs["processing_status"] = "ended"
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"
    assert result.batch_id != theirs["id"]
    assert world.store.writes[0].not_ours == (theirs["id"],)
    assert world.api.results_read == [theirs["id"]]


def test_a_running_unclaimed_candidate_is_waited_for_then_checked() -> None:
    world = World()
    lost_intent(world)
    theirs = world.api.add_batch(["r0", "r1", "r2", "acb-marker-theirs"])
    waiting = world.submit()
    assert isinstance(waiting, SubmitWait)
    assert waiting.until == world.clock.moment + RECHECK
    assert world.api.creates_received == 0
    theirs["processing_status"] = "ended"
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert result.action == "created"


def test_a_claim_naming_this_shard_is_adopted_without_waiting() -> None:
    """A crash between the claim and the state: the claim is the proof."""
    world = World()
    lost_intent(world)
    mine = world.api.add_batch(["r0", "r1", "r2", "acb-marker-mine"])
    world.claims.claims[mine["id"]] = Claim(mine["id"], world.store.location, "acb-marker-mine", "t")
    result = world.submit()
    assert isinstance(result, SubmitResult)
    assert (result.batch_id, result.action) == (mine["id"], "recovered")


def test_a_candidate_whose_results_stay_short_fails_the_task_naming_the_batch() -> None:
    world = World()
    intent = lost_intent(world)
    mine = world.api.add_batch(["r0", "r1", "r2", str(intent.marker_id)])
    mine["processing_status"] = "ended"
    world.api.bad_reads = ["short", "missing", "short", "short"]
    with pytest.raises(SubmitRecoveryError, match=rf"results of batch {mine['id']}.*could not be read whole"):
        world.submit()
    assert world.store.state is not None
    assert world.store.state.status == "intent"
    assert world.store.state.not_ours == ()
    assert world.api.creates_received == 0


def test_two_shards_of_one_size_both_losing_their_answer_each_find_their_own() -> None:
    first = World()
    second = World().join(first, "p/round-0/shard-00001.state.json", SHARD.uri.replace("00000", "00001"))
    for world in (first, second):
        world.api.lose_next = "after_create"
        assert isinstance(world.submit(), SubmitWait)
    first.api.end_all()
    mine, theirs = first.submit_until_done(), second.submit_until_done()
    assert {mine.batch_id, theirs.batch_id} == {"msgbatch_000", "msgbatch_001"}
    assert mine.batch_id == "msgbatch_000"
    assert first.api.creates_received == 2


def test_a_lost_answer_beside_another_runs_unclaimed_same_size_batch_ends_with_each_its_own() -> None:
    world = World()
    other = World().join(world, "other/round-0/shard-00000.state.json", "file:///runs/d/other/p/s0")
    world.api.lose_next = "before_create"  # this shard's create made nothing
    with pytest.raises(AfterSubmitError, match="no batch for it is listed yet"):
        world.submit()
    other.api.lose_next = "after_create"
    other.submit()  # another run's batch of the same size, answer lost too: unclaimed
    waiting = world.submit()  # the retry
    assert isinstance(waiting, SubmitWait)
    assert not waiting.nothing_listed, "the other run's batch may be this shard's until it ends"
    result = world.submit_until_done()
    assert result.action == "created"
    assert result.batch_id == "msgbatch_001"
    theirs = other.submit_until_done()
    assert (theirs.batch_id, theirs.action) == ("msgbatch_000", "recovered")


def test_an_adopted_batch_of_a_changed_shard_is_recorded_then_refused() -> None:
    world = World()
    lost_intent(world)
    batch = world.api.add_batch(["r0", "r1", "r2", "acb-marker-mine"])
    batch["processing_status"] = "ended"
    world.fingerprint = ShardFingerprint("0" * 64, 3, 99, "claude-sonnet-4-6")
    with pytest.raises(AfterSubmitError, match="changed after it was submitted"):
        world.submit()
    assert world.store.state is not None
    assert world.store.state.batch_id == batch["id"]


def test_an_intent_written_without_a_marker_stops_with_the_remedy() -> None:
    world = World()
    world.store.state = SubmitState(
        shard_uri=SHARD.uri,
        fingerprint=PRINT.sha256,
        request_count=3,
        body_bytes=99,
        intent_at=format_utc(START),
        status="intent",
    )
    with pytest.raises(SubmitRecoveryError, match=r'"status": "submitted"'):
        world.submit()
    assert world.api.creates_received == 0
