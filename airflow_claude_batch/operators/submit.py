"""The submit task: one shard becomes one batch, exactly once across retries, crashes and reruns."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.compat import AirflowFailException, AirflowSkipException, conf
from airflow_claude_batch.core.api import parse_retry_after
from airflow_claude_batch.core.run import ClaimsIndex, RunFolder, ShardDescriptor, is_canceled
from airflow_claude_batch.core.submit import (
    DEFAULT_PACING_TIMEOUT,
    DEFAULT_RECHECK,
    DEFAULT_SETTLE_MARGIN,
    FAILED,
    PACED_STATUSES,
    CreateOutcomeUnknown,
    CreateRefused,
    CreateThrottled,
    ShardLine,
    ShardStateFile,
    ShardToSubmit,
    SubmitResult,
    SubmitTiming,
    SubmitWait,
    fingerprint_shard,
    format_utc,
    parse_utc,
    read_state,
    submit_shard,
    utc_now,
)
from airflow_claude_batch.exceptions import AfterSubmitError, BeforeSubmitError
from airflow_claude_batch.links import ClaudeBatchLink
from airflow_claude_batch.settings import allow_unconditional_writes

#: HTTP statuses with which the API refuses a create without making a batch, when the answer carries the
#: API's own error body (429 and 529 are paced). Any other answer leaves the create's outcome unknown.
REFUSING_STATUSES = frozenset({400, 401, 403, 404, 413, 422})


class ClaudeBatchSubmitOperator(BaseOperator):
    """Submit a shard's requests file as one Message Batch; return the descriptor with its ``batch_id``.

    The shard's state file (``round-r/shard-nnnnn.state.json``) makes the submit safe to retry, rerun
    or clear: a shard already submitted re-attaches to its batch. Every create also sends one marker
    request naming the shard and the attempt, so that a create whose answer was lost (a timeout, a
    dropped connection, a worker killed at the wrong moment) is adopted only with proof: a claim in the
    storage root's claims index, or the marker in the batch's results. While that cannot be told yet (a
    candidate batch still running, or a create that may still land), the task waits, deferred by
    default, and never creates a second batch. The create itself is never retried automatically, so
    give the task ``retries``: a refused create is sent again by the retry. Only the API's own refusal
    (400/401/403/404/413/422 with its JSON error body) counts as one; any other answer (408, 409, any
    5xx, a gateway's page) may have made a batch, so nothing is sent again before the create settles
    (the connection's timeout plus ``create_settle_margin``). The shard's state file is written
    exclusively by the storage (local files, S3; see ``[claude_batch] allow_unconditional_writes``), so
    two submits of one shard at once make one batch.

    A create refused for now (429: the organisation's batch queue is full or its rate limit used up;
    529: overloaded) waits instead of failing, deferred by default, until the answer's ``retry-after``
    (or a growing backoff) and then is sent again, in shard order within the round, after proving the
    refused attempt made no batch (:mod:`~airflow_claude_batch.core.submit.pacing`). The task fails only when
    it has waited ``pacing_timeout`` for capacity.

    The shard file is streamed as the request body, so memory stays flat whatever its size. Only ids,
    counts and paths are logged, never a request.

    :param shard: the shard's descriptor (templated), as the build returns it; map the operator over the
        build's output with ``.partial(task_id=..., conn_id=...).expand(shard=build.output)``.
    :param conn_id: the Claude connection (templated).
    :param storage_conn_id: the connection for the run folder's storage (templated).
    :param recheck_interval: seconds between looks at a running batch that may hold a lost create.
    :param create_settle_margin: seconds past the connection's timeout during which an unanswered create
        is still taken to be able to make a batch (no second create before then).
    :param pacing_timeout: seconds a try of the task may wait for the API's capacity (queue or rate
        limit), from its first such wait, before it fails; clearing the task waits again.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("shard", "conn_id", "storage_conn_id")
    ui_color = "#f3e3d3"
    operator_extra_links = (ClaudeBatchLink(),)

    def __init__(
        self,
        *,
        shard: dict[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        storage_conn_id: str | None = None,
        recheck_interval: float = DEFAULT_RECHECK.total_seconds(),
        create_settle_margin: float = DEFAULT_SETTLE_MARGIN.total_seconds(),
        pacing_timeout: float = DEFAULT_PACING_TIMEOUT.total_seconds(),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shard = shard
        self.conn_id = conn_id
        self.storage_conn_id = storage_conn_id
        self.recheck_interval = recheck_interval
        self.create_settle_margin = create_settle_margin
        self.pacing_timeout = pacing_timeout
        self.deferrable = deferrable

    def execute(self, context: Any) -> dict[str, Any]:
        return self._run(context, None)

    def execute_complete(
        self, context: Any, event: Any = None, pacing_since: str | None = None
    ) -> dict[str, Any]:
        """Look again after a deferred wait (the same steps as ``execute``).

        :param pacing_since: when this try first waited for capacity (the deadline's start), if it did.
        """
        return self._run(context, parse_utc(pacing_since) if pacing_since else None)

    def _run(self, context: Any, pacing_since: datetime | None) -> dict[str, Any]:
        outcome = self._submit_once(pacing_since)
        while isinstance(outcome, SubmitWait):
            if outcome.capacity and pacing_since is None:
                pacing_since = utc_now()
            if self.deferrable:
                from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                self.defer(
                    trigger=DateTimeTrigger(moment=outcome.until),
                    method_name="execute_complete",
                    kwargs={"pacing_since": format_utc(pacing_since) if pacing_since else None},
                )
            time.sleep(max(0.0, (outcome.until - utc_now()).total_seconds()))
            outcome = self._submit_once(pacing_since)
        return self._finish(context, outcome)

    def _submit_once(self, pacing_since: datetime | None) -> SubmitResult | SubmitWait:
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        shard = ShardDescriptor.from_dict(self.shard)
        folder = RunFolder(ObjectStoragePath(shard.run_uri, conn_id=self.storage_conn_id))
        requests_path = ObjectStoragePath(shard.uri, conn_id=self.storage_conn_id)
        _stop_if_canceled(folder, shard)
        hook = ClaudeBatchHook(conn_id=self.conn_id)
        pacing_timeout = timedelta(seconds=float(self.pacing_timeout))
        unconditional = allow_unconditional_writes()
        try:
            return submit_shard(
                ShardToSubmit(uri=shard.uri, request_count=shard.request_count, body_bytes=shard.body_bytes),
                api=_ShardBatchApi(hook, requests_path, shard, folder),
                store=ShardStateFile(folder, shard.round, shard.index, allow_unconditional=unconditional),
                claims=ClaimsIndex(folder.storage_root, allow_unconditional=unconditional),
                fingerprint=lambda: fingerprint_shard(requests_path),
                timing=SubmitTiming(
                    settle_after=timedelta(seconds=hook.settings.timeout + float(self.create_settle_margin)),
                    recheck=timedelta(seconds=float(self.recheck_interval)),
                    pacing_deadline=None if pacing_since is None else pacing_since + pacing_timeout,
                    pacing_timeout=pacing_timeout,
                ),
                line=ShardLine(folder, shard.round, shard.index),
            )
        except BeforeSubmitError as exc:
            # Bad input or configuration, or no capacity until the deadline, and no batch was made: a
            # retry cannot fix it.
            raise AirflowFailException(str(exc)) from exc
        except AfterSubmitError:
            _stop_if_canceled(folder, shard)  # a create refused because of the cancel
            raise
        finally:
            hook.close()

    def _finish(self, context: Any, result: SubmitResult) -> dict[str, Any]:
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        hook = ClaudeBatchHook(conn_id=self.conn_id)
        base_url = hook.settings.base_url
        shard = ShardDescriptor.from_dict(self.shard)
        folder = RunFolder(ObjectStoragePath(shard.run_uri, conn_id=self.storage_conn_id))
        if is_canceled(folder):
            # The cancel came while this batch was being created or adopted: the command may have read
            # the state before the batch was recorded, so the submit cancels its own batch.
            try:
                hook.cancel_batch(result.batch_id)
            except Exception as exc:  # the batch may have ended already; the cancel command can retry
                self.log.warning("the run was canceled; cancelling batch %s failed: %s", result.batch_id, exc)
            else:
                self.log.warning("the run was canceled; batch %s cancel requested", result.batch_id)
        self.log.info(
            "Round %d, shard %d: batch %s with %d requests (%s)",
            shard.round,
            shard.index,
            result.batch_id,
            result.request_count,
            result.action,
        )
        ClaudeBatchLink.persist(context, base_url=base_url, batch_id=result.batch_id)
        return shard.evolve(batch_id=result.batch_id, marker_id=result.marker_id).to_dict()


class _ShardBatchApi:
    """The submit's API calls for one shard, made through the hook."""

    def __init__(
        self, hook: Any, requests_path: ObjectStoragePath, shard: ShardDescriptor, folder: RunFolder
    ) -> None:
        self.hook = hook
        self.requests_path = requests_path
        self.shard = shard
        self.folder = folder

    def create_batch(self, marker: bytes) -> dict[str, Any]:
        import anthropic  # here, not at module level: parsing a DAG file never loads the SDK

        from airflow_claude_batch.hooks.claude import is_api_error_body

        if is_canceled(self.folder):  # read just before the create: nothing is sent after a cancel
            raise CreateRefused(
                f"the run was canceled on purpose ({self.folder.cancel_record}); nothing was sent"
            )
        try:
            return self.hook.create_batch_from_file(
                self.requests_path, self.shard.request_count, self.shard.body_bytes, marker
            )
        except anthropic.APIStatusError as exc:
            error = f"HTTP {exc.status_code} {exc.type or 'error'}"
            if exc.status_code in PACED_STATUSES:
                retry_after = parse_retry_after(exc.response.headers, now=time.time())
                raise CreateThrottled(f"{error}: {exc.api_message or ''}".rstrip(": "), retry_after) from exc
            if exc.status_code in REFUSING_STATUSES and is_api_error_body(exc.body):
                raise CreateRefused(error) from exc
            # 408, 409, any 5xx, a gateway's page, a 4xx not from the API: a batch may have been made.
            raise CreateOutcomeUnknown(f"{error} (the create may have made a batch)") from exc

    def iter_batches(self, page_size: int) -> Iterator[dict[str, Any]]:
        return self.hook.iter_batches(limit=page_size)

    def result_ids(self, batch_id: str) -> Iterator[str]:
        for line in self.hook.iter_results(batch_id):
            yield str(line.get("custom_id"))


def _stop_if_canceled(folder: RunFolder, shard: ShardDescriptor) -> None:
    """End the task without creating when the run was canceled on purpose and this shard has no batch
    (none yet, or only refused creates: a shard waiting for capacity after a 429 is one). A shard whose
    create may have been sent goes on to its recovery, which may adopt its batch but creates nothing."""
    if not is_canceled(folder):
        return
    state = read_state(folder.shard_state(shard.round, shard.index))
    if state is None or state.status == FAILED:
        raise AirflowSkipException(
            f"the run was canceled on purpose ({folder.cancel_record}): round {shard.round}, shard "
            f"{shard.index} was not created; its {shard.request_count} records are pending (reason "
            "canceled). To resume the run: python -m airflow_claude_batch.cancel --resume ..., then clear "
            "its tasks"
        )
