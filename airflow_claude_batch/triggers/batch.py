"""The deferrable wait: a trigger that watches one batch until it ends.

The triggers of one triggerer process do not poll one by one: each registers its batch with the
connection's shared poller (:mod:`.coalesced_poller`), which lists the workspace's batches, a
thousand a call, and retrieves on its own only a batch the list does not show. Each trigger still
decides for its own batch when it wants its next look, how it backs off after an error, and when its
wall-clock deadline has passed, with :mod:`airflow_claude_batch.core.wait.polling`, shared with the
sensor's poke and reschedule modes. Every call is non-blocking on the triggerer's event loop, made
with the SDK's own retries off through one HTTP client per connection (:mod:`.clients`).

Nothing in the task's life cancels the batch: not a polling failure, not a triggerer restart, not
the task being killed, cleared or marked (:meth:`ClaudeBatchTrigger.on_kill`). Only a missed deadline
with ``cancel_on_timeout=True`` does, or the explicit ``python -m airflow_claude_batch.cancel``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.core.wait import (
    CANCELING,
    DEFAULT_DEADLINE_MARGIN_S,
    DEFAULT_POLL_INTERVAL_S,
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
    progress_line,
    request_counts,
)
from airflow_claude_batch.triggers.async_clients import ConnectionUnusable, shared_clients
from airflow_claude_batch.triggers.coalesced_poller import POLL_REQUEST_TIMEOUT_S, poller_for
from airflow_claude_batch.triggers.deadline_cancel import (
    CANCEL_REQUEST_TIMEOUT_S,
    async_cancel_retrying,
    why_not_cancelled,
)


class ClaudeBatchTrigger(BaseTrigger):
    """Wait for a message batch to end, then fire one event with its final counts.

    Events (``TriggerEvent.payload``): ``status`` is ``"success"`` (the batch ended; ``request_counts``
    and ``processing_status`` are set), ``"timeout"`` (the deadline passed; ``cancel_requested`` says
    whether a cancel was sent) or ``"error"`` (the batch is unknown or the connection was rejected;
    ``error_kind`` says which). Every payload has ``batch_id`` and a ``message`` naming the batch.

    :param batch_id: the batch to wait for.
    :param conn_id: the Claude connection to poll through.
    :param poll_interval: seconds between looks at the batch (any positive value), spread by 10 %
        jitter. A look may come sooner, at no cost, when the shared poller lists the batch anyway.
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
        """Watch until the batch ends, the deadline passes, or polling cannot succeed; yield one event."""
        failures = 0
        last_batch: dict[str, Any] | None = None
        progress = ProgressLog()
        now = time.time()
        self._due_at = now + first_poll_delay(now=now, end_time=self.end_time, policy=self.policy)
        poller = poller_for(self.conn_id)
        self._watch = poller.watch(self.batch_id)
        try:
            while True:
                batch, error = await self._poll()
                now = time.time()
                if batch is None and error is None:  # no answer came before the deadline
                    decision = PollDecision(PollAction.DEADLINE, reason="no answer before the deadline")
                elif error is None:
                    failures, last_batch = 0, batch
                    decision = decide_on_batch(batch, now=now, end_time=self.end_time, policy=self.policy)
                    self._log_progress(batch, decision, now, progress)
                else:
                    failures += 1
                    decision = decide_on_error(
                        error,
                        attempt=failures,
                        now=now,
                        end_time=self.end_time,
                        policy=self.policy,
                        seen=last_batch is not None,
                    )
                    self._log_failed_poll(error, decision, failures, now)
                if decision.action is PollAction.WAIT:
                    self._due_at = now + decision.delay
                    continue
                poller.forget(self._watch)  # before the cancel a deadline may send: no more looks
                yield await self._final_event(decision, last_batch, error)
                return
        finally:
            poller.forget(self._watch)

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
        """Wait for the batch's next state from the shared poller, asked for at ``self._due_at``.

        Returns ``(None, None)`` when nothing came before the deadline (and the time a last request
        may take).
        """
        snapshot = await poller_for(self.conn_id).next_snapshot(
            self._watch, due_at=self._due_at, give_up_at=self.end_time + POLL_REQUEST_TIMEOUT_S
        )
        return snapshot.batch, snapshot.error

    async def _cancel(self) -> str | None:
        """Ask the API to cancel the batch; return ``None`` when it accepted, else why it did not."""
        try:
            async for attempt in async_cancel_retrying():
                with attempt:
                    async with shared_clients().lease(self.conn_id) as client:
                        await client.messages.batches.with_raw_response.cancel(
                            self.batch_id, timeout=CANCEL_REQUEST_TIMEOUT_S
                        )
        except ConnectionUnusable as exc:
            return exc.error.describe()
        except Exception as exc:
            return why_not_cancelled(exc)
        return None

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
        line = progress_line(batch, decision, now=now, end_time=self.end_time, progress=progress)
        if line is not None:
            self.log.info("%s", line)

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
