"""The wait step: a sensor that waits for a batch to end and returns its counts.

Deferrable by default through ``[operators] default_deferrable``: the sensor reads the batch once,
fixes the wall-clock deadline (the batch's ``expires_at`` plus ``deadline_margin``) and hands over to
:class:`~airflow_claude_batch.triggers.batch.ClaudeBatchTrigger`. With ``deferrable=False`` it polls
from the worker in ``mode="reschedule"`` (the default then: the slot is freed between polls, its calls
in :mod:`.worker_calls`) or ``mode="poke"``. Both take their decisions from
:mod:`airflow_claude_batch.core.wait.polling`. It waits for a shard of the pipeline (``shard=``) or for any
batch (``batch_id=``), and honours the base sensor's ``timeout``, ``soft_fail``, ``mode`` and
``exponential_backoff`` as Airflow's own sensors do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import timezone
from airflow.sdk.bases.sensor import BaseSensorOperator

from airflow_claude_batch import DEFAULT_CONN_ID, settings
from airflow_claude_batch.compat import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    conf,
)
from airflow_claude_batch.core.wait import (
    CANCELING,
    DEFAULT_DEADLINE_MARGIN_S,
    ENDED,
    ErrorKind,
    PollAction,
    PollDecision,
    PollError,
    PollPolicy,
    ProgressLog,
    canceled_message,
    deadline_message,
    decide_on_batch,
    decide_on_error,
    default_end_time,
    describe_progress,
    failure_message,
    format_duration,
    marker_note,
    progress_line,
    request_counts,
)
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    BatchDeadlineError,
    BatchNotFoundError,
    ClaudeBatchError,
    ConnectionConfigError,
    InputError,
)
from airflow_claude_batch.links import ClaudeBatchLink
from airflow_claude_batch.sensors.worker_calls import (
    cancel_batch,
    connection_base_url,
    retrieve_batch,
    worker_client,
)

if TYPE_CHECKING:
    import anthropic
    from airflow.sdk import Context

#: The descriptor keys the sensor needs; the rest of the descriptor is passed through unchanged.
REQUIRED_SHARD_KEYS = ("run_uri", "round", "index", "uri", "batch_id")


class ClaudeBatchSensor(BaseSensorOperator):
    """Wait for a message batch to end; return its counts.

    Transient API errors (429 honouring ``retry-after``, 5xx, 529, connection errors) are waited out
    with backoff until the deadline: polling never cancels a batch. An unknown batch or a rejected key
    fails the task at once. When the deadline passes the task fails with ``BatchDeadlineError`` and the
    batch is cancelled only if ``cancel_on_timeout``. Killing, clearing or marking the task (deferred
    or not) leaves the batch running, so that a rerun re-attaches to it; cancelling is the explicit
    ``python -m airflow_claude_batch.cancel``.

    Give it one of:

    - ``batch_id``: any batch, made by this package or elsewhere. It returns ``{"batch_id",
      "processing_status", "request_counts"}``.
    - ``shard``: a ``ShardDescriptor`` dict as the submit operator returns it (the pipeline maps the
      sensor over the submit's output with ``.expand(shard=...)``). It returns the descriptor with
      ``processing_status`` and ``request_counts`` filled in.

    The base sensor's arguments work as for Airflow's own sensors: ``timeout`` (seconds from the
    first poll, deferred or not) fails the task with ``AirflowSensorTimeout``; ``soft_fail`` turns that
    and the wait's failures (deadline, unknown batch, rejected connection) into a skip; ``mode`` is
    ``reschedule`` (the default when not deferrable: no slot is held between polls) or ``poke``;
    ``exponential_backoff`` (and ``max_wait``) spread
    the polls made from the worker (the triggerer polls every ``poll_interval``). ``poke_interval``
    defaults to ``poll_interval``.

    :param batch_id: the batch to wait for (templated); give this or ``shard``.
    :param shard: the shard's descriptor (templated), with its ``batch_id``; give this or ``batch_id``.
    :param conn_id: the Claude connection (templated).
    :param poll_interval: seconds between polls (any positive value), spread by 10 % jitter (default:
        ``[claude_batch] poll_interval``, 60). Deferred, the waits of one triggerer share one poller
        that lists their batches a thousand a call, within ``[claude_batch] batch_rpm_limit`` x
        ``poll_rpm_share``; from the worker, every poll is one call against that limit.
    :param deferrable: hand the wait to the triggerer (default: ``[operators] default_deferrable``).
    :param cancel_on_timeout: when the deadline passes, cancel the batch (``True``) or leave it
        running (``False``, the default: it still ends by itself at its expiry).
    :param deadline_margin: seconds after the batch's ``expires_at`` at which the wait gives up. A batch
        always ends by its expiry, so the default hour only trips when the API misbehaves; a negative
        margin gives up before the expiry.
    """

    template_fields: Sequence[str] = ("batch_id", "shard", "conn_id")
    ui_color = "#f0e4d8"
    operator_extra_links = (ClaudeBatchLink(),)

    def __init__(
        self,
        *,
        batch_id: str | None = None,
        shard: dict[str, Any] | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_timeout: bool = False,
        deadline_margin: float = DEFAULT_DEADLINE_MARGIN_S,
        **kwargs: Any,
    ) -> None:
        if poll_interval is None:
            poll_interval = settings.poll_interval()
        kwargs.setdefault("poke_interval", poll_interval)
        if not deferrable:
            # A batch runs for hours: a wait polled from the worker hands its slot back between polls
            # unless the DAG asks for poke mode itself.
            kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        if (batch_id is None) == (shard is None):
            raise ValueError(
                f"{self.task_id}: give the sensor either batch_id= (any batch) or shard= (a descriptor "
                "from the submit operator), not both and not neither."
            )
        self.batch_id = batch_id
        self.shard = shard
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deferrable = deferrable
        self.cancel_on_timeout = cancel_on_timeout
        self.deadline_margin = float(deadline_margin)
        PollPolicy(poll_interval=self.poll_interval)  # fail at parse time on a bad interval

    @property
    def policy(self) -> PollPolicy:
        return PollPolicy(poll_interval=self.poll_interval)

    def execute(self, context: Context) -> dict[str, Any]:
        with self._soft_fail():
            self._resolve_batch_id()
            base_url = connection_base_url(self.conn_id)
            ClaudeBatchLink.persist(context, base_url=base_url, batch_id=self.batch_id)
            self._explain_the_marker(context)
            if self.deferrable:
                return self._defer_unless_ended()
            return self._wait_in_worker(context)

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: return the counts, or fail with the event's message."""
        with self._soft_fail():
            self._resolve_batch_id()
            status = event.get("status")
            if status == "success":
                self.log.info("%s.", event["message"])
                return self._result(event)
            if status == "timeout":
                raise BatchDeadlineError(event["message"])
            self._raise_failure(
                ErrorKind(event.get("error_kind", ErrorKind.REJECTED.value)), event["message"]
            )

    def on_kill(self) -> None:
        """Leave the batch running: the task was killed (cleared, marked) while it polled from the worker."""
        self.log.info(
            "Task killed (cleared or marked); batch %s keeps running and a rerun re-attaches to it. "
            "To cancel it, run: python -m airflow_claude_batch.cancel --help",
            self.batch_id,
        )

    # --- the two paths -----------------------------------------------------------------------------

    def _defer_unless_ended(self) -> dict[str, Any]:
        batch, error = retrieve_batch(self._client, self.batch_id)
        now = time.time()
        if batch is not None and batch.get("processing_status") == ENDED:
            self.log.info("%s.", describe_progress(batch, now=now, end_time=now))
            return self._result(batch)
        if error is not None and not error.transient:
            self._raise_failure(error.kind, failure_message(self.batch_id, conn_id=self.conn_id, error=error))
        # Fixed here, serialized with the trigger: a triggerer restart does not move the deadline.
        end_time = default_end_time(batch, margin=self.deadline_margin, now=now)
        self.log.info(
            "Deferring: the triggerer polls batch %s every %s until it ends (deadline in %s).",
            self.batch_id,
            format_duration(self.poll_interval),
            format_duration(end_time - now),
        )
        # Imported here: the trigger's poller and async clients are the triggerer's, not a DAG file's parse.
        from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger

        self.defer(
            trigger=ClaudeBatchTrigger(
                batch_id=self.batch_id,
                conn_id=self.conn_id,
                poll_interval=self.poll_interval,
                end_time=end_time,
                cancel_on_timeout=self.cancel_on_timeout,
            ),
            method_name="execute_complete",
            # Airflow fails the task with AirflowSensorTimeout (or skips it, soft_fail) when it passes.
            timeout=timedelta(seconds=self.timeout),
        )

    def _wait_in_worker(self, context: Context) -> dict[str, Any]:
        """Poll until the batch ends; in reschedule mode, hand the slot back between polls.

        The deadline comes from the batch's ``expires_at``, so it is the same on every reschedule. A
        reschedule starts its count of failed polls afresh: its backoff is the first one, at least
        one poll interval (and any ``retry-after``).
        """
        failures = 0
        end_time: float | None = None
        last_batch: dict[str, Any] | None = None
        progress = ProgressLog()
        started = self._first_attempt_time(context, default=time.time())
        poke_count = 1
        while True:
            batch, error = retrieve_batch(self._client, self.batch_id)
            now = time.time()
            if error is None:
                failures, last_batch = 0, batch
                end_time = default_end_time(batch, margin=self.deadline_margin, now=now)
                decision = decide_on_batch(batch, now=now, end_time=end_time, policy=self.policy)
                # In reschedule mode each run is one poll: every run logs its line.
                if line := progress_line(batch, decision, now=now, end_time=end_time, progress=progress):
                    self.log.info("%s", line)
            else:
                failures += 1
                if end_time is None:
                    end_time = default_end_time(None, margin=self.deadline_margin, now=started)
                seen = last_batch is not None
                decision = decide_on_error(
                    error, attempt=failures, now=now, end_time=end_time, policy=self.policy, seen=seen
                )
                self._log_failed_poll(error, decision, failures)
            if decision.action is PollAction.DONE:
                return self._result(batch)
            if decision.action is PollAction.DEADLINE:
                self._give_up_at_deadline(last_batch, end_time)
            if decision.action is PollAction.FAIL:
                assert error is not None
                self._raise_failure(
                    error.kind, failure_message(self.batch_id, conn_id=self.conn_id, error=error)
                )
            run_duration = time.time() - started
            if run_duration > self.timeout:
                raise AirflowSensorTimeout(
                    f"Batch {self.batch_id} had not ended after {format_duration(run_duration)}, the "
                    f"sensor's timeout of {format_duration(self.timeout)}. The batch keeps running."
                )
            delay = decision.delay
            if self.exponential_backoff:
                backoff = self._get_next_poke_interval(started, lambda: time.time() - started, poke_count)
                delay = max(delay, backoff)
            poke_count += 1
            if self.reschedule:
                raise AirflowRescheduleException(timezone.utcnow() + timedelta(seconds=delay))
            time.sleep(delay)

    def _give_up_at_deadline(self, last_batch: dict[str, Any] | None, end_time: float) -> NoReturn:
        last_status = last_batch.get("processing_status") if last_batch else None
        cancel_error = None
        if self.cancel_on_timeout and last_status != CANCELING:
            cancel_error = cancel_batch(self._client, self.batch_id)
        raise BatchDeadlineError(
            deadline_message(
                self.batch_id,
                end_time=end_time,
                last_status=last_status,
                cancel_on_timeout=self.cancel_on_timeout,
                cancel_error=cancel_error,
            )
        )

    # --- the calls ---------------------------------------------------------------------------------

    @cached_property
    def _client(self) -> anthropic.Anthropic:
        return worker_client(self.conn_id)

    # --- helpers -----------------------------------------------------------------------------------

    @contextmanager
    def _soft_fail(self) -> Iterator[None]:
        """With ``soft_fail``, a timeout or a failed wait skips the task, as for Airflow's sensors."""
        try:
            yield
        except (AirflowSkipException, AirflowRescheduleException):
            raise
        except (AirflowException, ClaudeBatchError) as exc:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping (soft_fail=True): {exc}") from exc
            raise

    def _resolve_batch_id(self) -> None:
        if self.shard is None:
            if not isinstance(self.batch_id, str) or not self.batch_id.strip():
                raise AirflowFailException(
                    f"{self.task_id}: batch_id is {self.batch_id!r}: pass the id of the batch to wait for "
                    "(msgbatch_...), or a template that renders to it."
                )
            self.batch_id = self.batch_id.strip()
            return
        self._check_shard()
        self.batch_id = str(self.shard["batch_id"])

    def _check_shard(self) -> None:
        shard = self.shard
        missing = [key for key in REQUIRED_SHARD_KEYS if not isinstance(shard, Mapping) or key not in shard]
        if missing or not shard.get("batch_id"):
            where = f"{self.dag_id}.{self.task_id}" if self.has_dag() else self.task_id
            raise AirflowFailException(
                str(
                    InputError(
                        f"the shard to wait for has no {', '.join(missing) or 'batch_id'}: pass the "
                        "descriptor the submit operator returned (shard=submit.output), or a dict with "
                        f"{', '.join(REQUIRED_SHARD_KEYS)}.",
                        location=where,
                    )
                )
            )

    def _result(self, batch_or_event: Mapping[str, Any]) -> dict[str, Any]:
        counts = request_counts(batch_or_event)
        if batch_or_event.get("cancel_initiated_at"):
            self.log.warning(canceled_message(self.batch_id, counts))
        if self.shard is None:
            return {"batch_id": self.batch_id, "processing_status": ENDED, "request_counts": counts}
        expected = self.shard.get("request_count")
        if isinstance(expected, int) and self.shard.get("marker_id"):
            expected += 1  # the batch's marker request
        if isinstance(expected, int) and sum(counts.values()) != expected:
            self.log.warning(
                "Batch %s holds %d requests but shard %s has %d: check that the batch id belongs to it.",
                self.batch_id,
                sum(counts.values()),
                self.shard.get("uri"),
                expected,
            )
        return {**self.shard, "processing_status": ENDED, "request_counts": counts}

    def _explain_the_marker(self, context: Context) -> None:
        """Say once per wait why the batch holds one request more than the shard's records."""
        records = (self.shard or {}).get("request_count")
        first_run = not self.reschedule or self._first_attempt_time(context, default=0.0) == 0.0
        if first_run and isinstance(records, int) and self.shard.get("marker_id"):
            self.log.info("%s", marker_note(self.batch_id, records=records))

    def _raise_failure(self, kind: ErrorKind, message: str) -> NoReturn:
        if kind in (ErrorKind.AUTH, ErrorKind.CONNECTION_CONFIG):
            # A rejected key stays rejected on retry: fail without retrying, as for any bad input.
            raise AirflowFailException(message) from ConnectionConfigError(message)
        if kind is ErrorKind.NOT_FOUND:
            raise BatchNotFoundError(message)
        raise AfterSubmitError(message)

    @staticmethod
    def _first_attempt_time(context: Context, *, default: float) -> float:
        """When the wait began: the first reschedule's date in reschedule mode, else ``default``."""
        ti = context.get("ti")
        first = ti.get_first_reschedule_date(context) if ti is not None else None
        return first.timestamp() if first is not None else default

    def _log_failed_poll(self, error: PollError, decision: PollDecision, failures: int) -> None:
        if decision.action is PollAction.WAIT:
            self.log.warning(
                "Polling batch %s failed (%s), %d in a row; next poll in %s. The batch keeps running.",
                self.batch_id,
                error.describe(),
                failures,
                format_duration(decision.delay),
            )
