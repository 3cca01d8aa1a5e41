"""One ``AsyncAnthropic`` per connection and event loop, leased by the triggers and their poller.

Every trigger polling through the same connection on one event loop shares one HTTP client, so
thousands of waiting shards cost one connection pool, not thousands. The client is built with the
SDK's own retries off: backoff is decided by :mod:`airflow_claude_batch.core.wait.polling`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_claude_batch.compat import AirflowNotFoundException
from airflow_claude_batch.core.wait import ErrorKind, PollError

if TYPE_CHECKING:
    import anthropic

#: Shared clients are rebuilt this often so that an edited connection (a rotated key) is picked up.
CLIENT_REFRESH_S = 300.0
#: Calls in flight at once per connection and triggerer; more would only queue inside the HTTP pool.
MAX_CALLS_IN_FLIGHT = 32


class ConnectionUnusable(Exception):
    """The connection could not be turned into a client (missing, or rejected by the hook)."""

    def __init__(self, error: PollError) -> None:
        super().__init__(error.describe())
        self.error = error


@dataclass
class _LeasedClient:
    client: anthropic.AsyncAnthropic
    created: float
    users: int = 0
    retired: bool = False
    closed: bool = False

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.created > CLIENT_REFRESH_S

    async def close_if_idle(self) -> None:
        if self.retired and self.users == 0 and not self.closed:
            self.closed = True
            await self.client.close()


class SharedClients:
    """``AsyncAnthropic`` clients (SDK retries off) shared by the triggers of one event loop.

    One per connection id, rebuilt every :data:`CLIENT_REFRESH_S` seconds; a replaced client is
    closed once its last in-flight call returns. At most :data:`MAX_CALLS_IN_FLIGHT` calls per
    connection are in flight at once; the others wait their turn in a first-come queue.
    """

    def __init__(self) -> None:
        self._current: dict[str, _LeasedClient] = {}
        self._building: dict[str, asyncio.Lock] = {}
        self._turns: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def lease(self, conn_id: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
        # The HTTP pool scans every waiting request each time a connection frees up: thousands of
        # waiting polls would make each poll cost in proportion to their number.
        async with self._turns.setdefault(conn_id, asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)):
            entry = await self._fresh_entry(conn_id)
            entry.users += 1
            try:
                yield entry.client
            finally:
                entry.users -= 1
                await entry.close_if_idle()

    async def _fresh_entry(self, conn_id: str) -> _LeasedClient:
        entry = self._current.get(conn_id)
        if entry is not None and not entry.stale:
            return entry
        # Reading the connection awaits: without the lock, every trigger starting at once builds its own.
        async with self._building.setdefault(conn_id, asyncio.Lock()):
            entry = self._current.get(conn_id)
            if entry is not None and not entry.stale:
                return entry
            fresh = _LeasedClient(await build_client(conn_id), created=time.monotonic())
            self._current[conn_id] = fresh
            if entry is not None:
                entry.retired = True
                await entry.close_if_idle()
            return fresh


_CLIENTS_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedClients] = (
    weakref.WeakKeyDictionary()
)


def shared_clients() -> SharedClients:
    loop = asyncio.get_running_loop()
    clients = _CLIENTS_BY_LOOP.get(loop)
    if clients is None:
        clients = _CLIENTS_BY_LOOP[loop] = SharedClients()
    return clients


async def build_client(conn_id: str) -> anthropic.AsyncAnthropic:
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook(conn_id)
    try:
        await hook.asettings()  # reads the connection without blocking the loop
        # Building a client loads the CA bundle: about 0.1 s of CPU, kept off the loop.
        return await asyncio.to_thread(hook.get_async_conn, max_retries=0)
    except AirflowNotFoundException as exc:
        detail = f"connection {conn_id!r} is not defined for the process that polls ({exc})"
        raise ConnectionUnusable(PollError(ErrorKind.CONNECTION_CONFIG, detail=detail)) from exc
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise ConnectionUnusable(PollError(ErrorKind.CONNECTION_CONFIG, detail=detail)) from exc
