"""One poller per connection and event loop: every waiting trigger's batch seen through the list endpoint.

A trigger registers its batch (:meth:`CoalescedPoller.watch`) and awaits its next snapshot
(:meth:`CoalescedPoller.next_snapshot`), saying when it wants it (its poll interval, jitter and error
backoff, decided by :mod:`airflow_claude_batch.core.wait.polling` as before). The poller wakes when the
first trigger is due, lists the workspace's batches newest first (``limit=1000``, paging only as far
back as the oldest watched batch), hands each watching trigger the state of its batch, and retrieves
on its own each due batch the list did not show. How deep to page and how often to call are decided
by :mod:`airflow_claude_batch.core.wait.coalesced_polling`, within the organisation's rate budget.

The poller is started by the first trigger that waits and ends when no trigger is left. If its task
dies, the triggers waiting on it are told and the next one starts a new poller; the triggers
themselves, their deadlines and their serialized state are untouched by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from airflow_claude_batch import settings
from airflow_claude_batch.core.api import parse_timestamp
from airflow_claude_batch.core.wait import (
    LIST_PAGE_LIMIT,
    ErrorKind,
    ListPage,
    PollBudget,
    PollError,
    keep_paging,
    next_cycle_at,
    parse_batch,
    parse_list_page,
    poll_error_from_exception,
)
from airflow_claude_batch.triggers.async_clients import ConnectionUnusable, shared_clients

log = logging.getLogger(__name__)

#: A poll is one small GET: when it hangs this long, the connection is treated as broken.
POLL_REQUEST_TIMEOUT_S = 60.0
#: A list page of 1,000 batches is about 0.5 MB.
LIST_REQUEST_TIMEOUT_S = 120.0
#: Triggers woken at once before the loop gets a turn: thousands at once would stall the event loop.
WAKE_CHUNK = 200
#: List errors that mean the endpoint is not served (a gateway): retrieve each batch from then on.
_LIST_UNSERVED = frozenset({ErrorKind.NOT_FOUND, ErrorKind.REJECTED})


@dataclass(frozen=True)
class Snapshot:
    """What a trigger receives: its batch, or why it could not be read (both ``None``: gave up waiting)."""

    batch: dict[str, Any] | None = None
    error: PollError | None = None


_POLLER_GONE = Snapshot()


@dataclass(eq=False)
class Watch:
    """One trigger's registration: its batch, when it wants its next look, and where to put it."""

    batch_id: str
    due_at: float = 0.0
    future: asyncio.Future[Snapshot] | None = None

    @property
    def waiting(self) -> bool:
        return self.future is not None and not self.future.done()


@dataclass
class _Cycle:
    """What one cycle has read and is about to hand over."""

    started: float
    by_batch: dict[str, list[Watch]]
    calls: int = 0
    seen: set[str] = field(default_factory=set)
    handouts: list[tuple[Watch, Snapshot]] = field(default_factory=list)


class CoalescedPoller:
    """The poller of one connection on one event loop.

    :param conn_id: the connection its calls go through (one leased client, see :mod:`.clients`).
    :param budget: the share of the organisation's batch RPM it may use.
    """

    def __init__(self, conn_id: str, budget: PollBudget) -> None:
        self.conn_id = conn_id
        self.budget = budget
        self._watches: dict[int, Watch] = {}
        self._tokens = count()
        self._created_at: dict[str, float] = {}
        self._watchers_of: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._planned = float("inf")
        self._not_before = 0.0
        self._list_served = True
        self.tasks_started = 0

    # --- the triggers' side ------------------------------------------------------------------------

    def watch(self, batch_id: str) -> int:
        """Register a batch to watch; return the token to pass to :meth:`next_snapshot` and :meth:`forget`."""
        token = next(self._tokens)
        self._watches[token] = Watch(batch_id)
        self._watchers_of[batch_id] += 1
        return token

    def forget(self, token: int) -> None:
        """Stop watching (the trigger ended, or was cancelled by a triggerer stop)."""
        watch = self._watches.pop(token, None)
        if watch is None:
            return
        if watch.waiting:
            watch.future.cancel()
        self._watchers_of[watch.batch_id] -= 1
        if self._watchers_of[watch.batch_id] <= 0:
            del self._watchers_of[watch.batch_id]
            self._created_at.pop(watch.batch_id, None)
        if not self._watches:
            self._wake.set()  # the poller ends

    async def next_snapshot(self, token: int, *, due_at: float, give_up_at: float) -> Snapshot:
        """Wait for the next state of the watched batch, asked for at ``due_at`` (epoch seconds).

        It may come sooner, when a list made for other triggers shows the batch anyway. Returns an empty
        :class:`Snapshot` when ``give_up_at`` passes first. When the poller dies, a new one is started.
        """
        watch = self._watches[token]
        while True:
            watch.due_at = due_at
            watch.future = asyncio.get_running_loop().create_future()
            self._ensure_running()
            if due_at < self._planned:
                self._wake.set()
            timeout = give_up_at - time.time()
            try:
                snapshot = await asyncio.wait_for(watch.future, max(timeout, 0.0))
            except TimeoutError:
                return Snapshot()
            if snapshot is not _POLLER_GONE:
                return snapshot
            log.warning("The poller of connection %r stopped; a new one takes over.", self.conn_id)

    # --- the poller's task -------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"claude-poller-{self.conn_id}")
            self._task.add_done_callback(self._on_task_done)
            self.tasks_started += 1

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:
            return
        if not task.cancelled() and task.exception() is not None:
            log.error("The poller of connection %r failed", self.conn_id, exc_info=task.exception())
        for watch in self._watches.values():
            if watch.waiting:
                watch.future.set_result(_POLLER_GONE)

    async def _run(self) -> None:
        while True:
            waiting = [watch for watch in self._watches.values() if watch.waiting]
            if not self._watches:
                return
            self._wake.clear()
            start = next_cycle_at((watch.due_at for watch in waiting), not_before=self._not_before)
            self._planned = float("inf") if start is None else start
            delay = self._planned - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), None if start is None else delay)
                    continue  # a trigger is due sooner, or joined: plan again
                except TimeoutError:
                    pass
            self._planned = float("-inf")  # no wake-ups while the cycle runs
            # Every trigger waiting now, those that joined while the poller slept included.
            await self._cycle([watch for watch in self._watches.values() if watch.waiting])

    async def _cycle(self, waiting: list[Watch]) -> None:
        by_batch: dict[str, list[Watch]] = defaultdict(list)
        for watch in waiting:
            by_batch[watch.batch_id].append(watch)
        cycle = _Cycle(started=time.time(), by_batch=by_batch)
        error = await self._list(cycle) if self._list_served else None
        due = [
            batch_id
            for batch_id, watches in by_batch.items()
            if batch_id not in cycle.seen and any(watch.due_at <= cycle.started for watch in watches)
        ]
        retrieve = error is None or (not error.transient and error.kind in _LIST_UNSERVED)
        if not retrieve:
            # The retrieves would fail alike: the due triggers back off (or fail) on the list's error.
            failed = Snapshot(error=error)
            cycle.handouts += [(watch, failed) for batch_id in due for watch in by_batch[batch_id]]
        else:
            results = await asyncio.gather(*(self._retrieve(batch_id) for batch_id in due))
            cycle.calls += len(due)
            for batch_id, snapshot in zip(due, results, strict=True):
                if snapshot.batch is not None:
                    self._learn_created_at(batch_id, snapshot.batch)
                cycle.handouts += [(watch, snapshot) for watch in by_batch[batch_id]]
        await self._hand_out(cycle)
        log.debug(
            "Polled %d batches through connection %r in %d calls (%d not listed and due, %s).",
            len(by_batch),
            self.conn_id,
            cycle.calls,
            len(due),
            "retrieved" if retrieve else f"not retrieved: {error.describe() if error else ''}",
        )
        self._not_before = cycle.started + self.budget.min_gap(cycle.calls)
        if error is not None and error.retry_after is not None:
            self._not_before = max(self._not_before, time.time() + error.retry_after)

    async def _list(self, cycle: _Cycle) -> PollError | None:
        """Read pages until every watched batch was seen or paging further cannot find it."""
        after_id: str | None = None
        pages = 0
        while True:
            page, error = await self._list_page(after_id)
            cycle.calls += 1
            if error is not None:
                if not error.transient and error.kind in _LIST_UNSERVED:
                    log.warning(
                        "Listing batches through connection %r failed (%s): each batch is retrieved on "
                        "its own from now on.",
                        self.conn_id,
                        error.describe(),
                    )
                    self._list_served = False
                return error
            pages += 1
            self._take(page, cycle)
            await self._hand_out(cycle)
            missing = (
                self._created_at.get(batch_id) for batch_id in cycle.by_batch if batch_id not in cycle.seen
            )
            if not keep_paging(page, pages_read=pages, missing_created_at=missing):
                return None
            after_id = page.last_id

    def _take(self, page: ListPage, cycle: _Cycle) -> None:
        for batch in page.batches:
            watches = cycle.by_batch.get(batch.get("id"))  # type: ignore[arg-type]
            if not watches:
                continue
            batch_id = watches[0].batch_id
            cycle.seen.add(batch_id)
            self._learn_created_at(batch_id, batch)
            snapshot = Snapshot(batch=batch)
            cycle.handouts += [(watch, snapshot) for watch in watches]

    def _learn_created_at(self, batch_id: str, batch: dict[str, Any]) -> None:
        """Remember when the batch was created: how far back the next cycles page for it."""
        if batch_id not in self._created_at and batch_id in self._watchers_of:
            created_at = parse_timestamp(batch.get("created_at"))
            if created_at is not None:
                self._created_at[batch_id] = created_at

    async def _hand_out(self, cycle: _Cycle) -> None:
        handouts, cycle.handouts = cycle.handouts, []
        for index, (watch, snapshot) in enumerate(handouts, 1):
            if watch.waiting:
                watch.future.set_result(snapshot)
            if index % WAKE_CHUNK == 0:
                await asyncio.sleep(0)  # let the woken triggers (and the rest of the loop) run

    # --- the calls ---------------------------------------------------------------------------------

    async def _list_page(self, after_id: str | None) -> tuple[ListPage | None, PollError | None]:
        query: dict[str, Any] = {"limit": LIST_PAGE_LIMIT}
        if after_id is not None:
            query["after_id"] = after_id
        try:
            async with shared_clients().lease(self.conn_id) as client:
                response = await client.messages.batches.with_raw_response.list(
                    **query, timeout=LIST_REQUEST_TIMEOUT_S
                )
                # The raw body: 1,000 batch models a page would cost more than the loop can spare.
                body = await response.read()
        except ConnectionUnusable as exc:
            return None, exc.error
        except Exception as exc:
            error = poll_error_from_exception(exc, now=time.time())
            if error is None:
                raise
            return None, error
        return parse_list_page(body)

    async def _retrieve(self, batch_id: str) -> Snapshot:
        try:
            async with shared_clients().lease(self.conn_id) as client:
                response = await client.messages.batches.with_raw_response.retrieve(
                    batch_id, timeout=POLL_REQUEST_TIMEOUT_S
                )
                body = await response.read()
        except ConnectionUnusable as exc:
            return Snapshot(error=exc.error)
        except Exception as exc:
            error = poll_error_from_exception(exc, now=time.time())
            if error is None:
                raise
            return Snapshot(error=error)
        batch, error = parse_batch(body)
        return Snapshot(batch, error)


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, CoalescedPoller]] = (
    weakref.WeakKeyDictionary()
)


def poller_for(conn_id: str) -> CoalescedPoller:
    """Return the poller of ``conn_id`` on the running event loop, made on first use."""
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    poller = pollers.get(conn_id)
    if poller is None:
        poller = pollers[conn_id] = CoalescedPoller(conn_id, settings.poll_budget())
    return poller


def pollers() -> Iterable[CoalescedPoller]:
    """The pollers of the running event loop (for tests and benchmarks)."""
    return tuple(_POLLERS.get(asyncio.get_running_loop(), {}).values())
