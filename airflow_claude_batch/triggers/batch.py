"""The deferrable wait: a trigger that polls one batch with the async client until it ends.

Each poll is one non-blocking ``GET /v1/messages/batches/{id}`` on the triggerer's event loop (no
thread per poll), made with the SDK's own retries off: the waiting between polls, the backoff on
errors and the deadline are decided by :mod:`airflow_claude_batch.batch.polling`, shared with the
sensor's poke and reschedule modes. Every trigger polling through the same connection on one event
loop shares one HTTP client, so thousands of waiting shards cost one connection pool, not thousands.

Nothing in the task's life cancels the batch: not a polling failure, not a triggerer restart, not
the task being killed, cleared or marked (:meth:`ClaudeBatchTrigger.on_kill`). Only a missed deadline
with ``cancel_on_timeout=True`` does, or the explicit ``python -m airflow_claude_batch.cancel``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.batch.polling import (
    CANCELING,
    DEFAULT_DEADLINE_MARGIN_S,
    DEFAULT_POLL_INTERVAL_S,
    ErrorKind,
    PollAction,
    PollDecision,
    PollError,
    PollPolicy,
    ProgressLog,
    deadline_message,
    decide_on_batch,
    decide_on_error,
    default_end_time,
    describe_progress,
    failure_message,
    first_poll_delay,
    format_duration,
    parse_batch,
    poll_error_from_exception,
    request_counts,
)
from airflow_claude_batch.compat import AirflowNotFoundException

if TYPE_CHECKING:
    import anthropic

#: A poll is one small GET: when it hangs this long, the connection is treated as broken.
POLL_REQUEST_TIMEOUT_S = 60.0
CANCEL_REQUEST_TIMEOUT_S = 8.0  # three attempts stay well under a minute
CANCEL_ATTEMPTS = 3
CANCEL_MAX_PAUSE_S = 5.0
#: Shared clients are rebuilt this often so that an edited connection (a rotated key) is picked up.
CLIENT_REFRESH_S = 300.0
#: Calls in flight at once per connection and triggerer; more would only queue inside the HTTP pool.
MAX_CALLS_IN_FLIGHT = 32


class ClaudeBatchTrigger(BaseTrigger):
    """Wait for a message batch to end, then fire one event with its final counts.

    Events (``TriggerEvent.payload``): ``status`` is ``"success"`` (the batch ended; ``request_counts``
    and ``processing_status`` are set), ``"timeout"`` (the deadline passed; ``cancel_requested`` says
    whether a cancel was sent) or ``"error"`` (the batch is unknown or the connection was rejected;
    ``error_kind`` says which). Every payload has ``batch_id`` and a ``message`` naming the batch.

    :param batch_id: the batch to wait for.
    :param conn_id: the Claude connection to poll through.
    :param poll_interval: seconds between polls (any positive value), spread by 10 % jitter.
    :param end_time: the wall-clock deadline, epoch seconds. It is serialized as given, so a trigger
        re-created after a triggerer restart keeps it. ``None``: the latest expiry a batch can have
        from now plus one hour, fixed at construction.
    :param cancel_on_timeout: when the deadline passes, cancel the batch (``True``) or leave it
        running (``False``).
    """

    def __init__(
        self,
        batch_id: str,
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        end_time: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.policy = PollPolicy(poll_interval=self.poll_interval)
        if end_time is None:
            end_time = default_end_time(None, margin=DEFAULT_DEADLINE_MARGIN_S, now=time.time())
        self.end_time = float(end_time)
        self.cancel_on_timeout = cancel_on_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_id": self.batch_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_timeout": self.cancel_on_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the batch ends, the deadline passes, or polling cannot succeed; yield one event."""
        failures = 0
        last_batch: dict[str, Any] | None = None
        progress = ProgressLog()
        delay = first_poll_delay(now=time.time(), end_time=self.end_time, policy=self.policy)
        while True:
            await asyncio.sleep(delay)
            batch, error = await self._poll()
            now = time.time()
            if error is None:
                failures, last_batch = 0, batch
                decision = decide_on_batch(batch, now=now, end_time=self.end_time, policy=self.policy)
                self._log_progress(batch, decision, now, progress)
            else:
                failures += 1
                decision = decide_on_error(
                    error, attempt=failures, now=now, end_time=self.end_time, policy=self.policy
                )
                self._log_failed_poll(error, decision, failures, now)
            if decision.action is PollAction.WAIT:
                delay = decision.delay
                continue
            yield await self._final_event(decision, last_batch, error)
            return

    async def cleanup(self) -> None:
        """Leave the batch alone: this runs on every exit, triggerer restarts and redistribution included."""

    async def on_kill(self) -> None:
        """Leave the batch running: the deferred task was killed (cleared, marked failed or success).

        Airflow calls this when a user clears a task or a whole run while it waits; a clear means "run
        it again", and the rerun re-attaches to this batch through the shard's state file, paying
        nothing again. Cancelling is an explicit action: ``python -m airflow_claude_batch.cancel``.
        """
        self.log.info(
            "Task killed (cleared or marked); batch %s keeps running and a rerun re-attaches to it. "
            "To cancel it, run: python -m airflow_claude_batch.cancel --help",
            self.batch_id,
        )

    # --- the calls ---------------------------------------------------------------------------------

    async def _poll(self) -> tuple[dict[str, Any] | None, PollError | None]:
        try:
            async with _shared_clients().lease(self.conn_id) as client:
                response = await client.messages.batches.with_raw_response.retrieve(
                    self.batch_id, timeout=POLL_REQUEST_TIMEOUT_S
                )
                # The raw body is enough for the decision and skips building a model per poll.
                body = await response.read()
        except _ConnectionUnusable as exc:
            return None, exc.error
        except Exception as exc:
            error = poll_error_from_exception(exc, now=time.time())
            if error is None:
                raise
            return None, error
        return parse_batch(body)

    async def _cancel(self) -> str | None:
        """Ask the API to cancel the batch; return ``None`` when it accepted, else why it did not."""
        for attempt in range(1, CANCEL_ATTEMPTS + 1):
            try:
                async with _shared_clients().lease(self.conn_id) as client:
                    await client.messages.batches.with_raw_response.cancel(
                        self.batch_id, timeout=CANCEL_REQUEST_TIMEOUT_S
                    )
                return None
            except _ConnectionUnusable as exc:
                return exc.error.describe()
            except Exception as exc:
                error = poll_error_from_exception(exc, now=time.time())
                if error is None:
                    return type(exc).__name__
                if not error.transient or attempt == CANCEL_ATTEMPTS:
                    return error.describe()
                await asyncio.sleep(min(error.retry_after or attempt, CANCEL_MAX_PAUSE_S))
        raise AssertionError("unreachable: the last attempt returns")

    # --- events and logs ---------------------------------------------------------------------------

    async def _final_event(
        self, decision: PollDecision, last_batch: dict[str, Any] | None, error: PollError | None
    ) -> TriggerEvent:
        if decision.action is PollAction.DONE:
            assert last_batch is not None
            return self._event(
                "success",
                last_batch,
                message=describe_progress(last_batch, now=time.time(), end_time=self.end_time),
            )
        if decision.action is PollAction.DEADLINE:
            return await self._deadline_event(last_batch)
        assert error is not None
        return self._event(
            "error",
            last_batch,
            message=failure_message(self.batch_id, conn_id=self.conn_id, error=error),
            error_kind=error.kind.value,
        )

    async def _deadline_event(self, last_batch: dict[str, Any] | None) -> TriggerEvent:
        last_status = last_batch.get("processing_status") if last_batch else None
        cancel_error = None
        cancel_requested = self.cancel_on_timeout and last_status != CANCELING
        if cancel_requested:
            cancel_error = await self._cancel()
        message = deadline_message(
            self.batch_id,
            end_time=self.end_time,
            last_status=last_status,
            cancel_on_timeout=self.cancel_on_timeout,
            cancel_error=cancel_error,
        )
        self.log.error("%s", message)
        return self._event(
            "timeout",
            last_batch,
            message=message,
            cancel_requested=cancel_requested and cancel_error is None,
        )

    def _event(
        self, status: str, batch: dict[str, Any] | None, *, message: str, **extra: Any
    ) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "batch_id": self.batch_id,
                "processing_status": batch.get("processing_status") if batch else None,
                "request_counts": request_counts(batch) if batch else {},
                "cancel_initiated_at": batch.get("cancel_initiated_at") if batch else None,
                "end_time": self.end_time,
                "message": message,
                **extra,
            }
        )

    def _log_progress(
        self, batch: dict[str, Any], decision: PollDecision, now: float, progress: ProgressLog
    ) -> None:
        final = decision.action is not PollAction.WAIT
        if not progress.due(batch.get("processing_status"), now=now, final=final):
            return
        line = describe_progress(batch, now=now, end_time=self.end_time)
        if decision.action is PollAction.WAIT:
            self.log.info("%s; next poll in %s.", line, format_duration(decision.delay))
        else:
            self.log.info("%s.", line)

    def _log_failed_poll(self, error: PollError, decision: PollDecision, failures: int, now: float) -> None:
        if decision.action is not PollAction.WAIT:
            return  # the final event's message says it
        self.log.warning(
            "Polling batch %s failed (%s), %d in a row; next poll in %s, %s before the deadline. "
            "The batch keeps running.",
            self.batch_id,
            error.describe(),
            failures,
            format_duration(decision.delay),
            format_duration(self.end_time - now),
        )


# --- one shared client per connection and event loop ------------------------------------------------


class _ConnectionUnusable(Exception):
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


class _SharedClients:
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
            fresh = _LeasedClient(await _build_client(conn_id), created=time.monotonic())
            self._current[conn_id] = fresh
            if entry is not None:
                entry.retired = True
                await entry.close_if_idle()
            return fresh


_CLIENTS_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedClients] = (
    weakref.WeakKeyDictionary()
)


def _shared_clients() -> _SharedClients:
    loop = asyncio.get_running_loop()
    clients = _CLIENTS_BY_LOOP.get(loop)
    if clients is None:
        clients = _CLIENTS_BY_LOOP[loop] = _SharedClients()
    return clients


async def _build_client(conn_id: str) -> anthropic.AsyncAnthropic:
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook(conn_id)
    try:
        await hook.asettings()  # reads the connection without blocking the loop
        # Building a client loads the CA bundle: about 0.1 s of CPU, kept off the loop.
        return await asyncio.to_thread(hook.get_async_conn, max_retries=0)
    except AirflowNotFoundException as exc:
        detail = f"connection {conn_id!r} is not defined for the process that polls ({exc})"
        raise _ConnectionUnusable(PollError(ErrorKind.CONNECTION_CONFIG, detail=detail)) from exc
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise _ConnectionUnusable(PollError(ErrorKind.CONNECTION_CONFIG, detail=detail)) from exc
