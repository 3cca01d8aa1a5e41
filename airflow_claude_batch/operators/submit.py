"""The submit task: one shard becomes one batch, exactly once across retries, crashes and reruns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.shards import ShardDescriptor
from airflow_claude_batch.batch.state import ShardStateFile, fingerprint_shard
from airflow_claude_batch.batch.submission import CreateRefused, ShardToSubmit, submit_shard
from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.exceptions import BeforeSubmitError
from airflow_claude_batch.links import ClaudeBatchLink


class ClaudeBatchSubmitOperator(BaseOperator):
    """Submit a shard's requests file as one Message Batch; return the descriptor with its ``batch_id``.

    The shard's state file (``round-r/shard-nnnnn.state.json``) makes the submit safe to retry, rerun
    or clear: a shard already submitted re-attaches to its batch; a create whose answer was lost (a
    timeout, a dropped connection, a worker killed at the wrong moment) is found again by listing the
    workspace's batches instead of being sent twice. The create itself is never retried automatically,
    so give the task ``retries``: a retry looks the batch up before it creates anything.

    The shard file is streamed as the request body, so memory stays flat whatever its size. Only ids,
    counts and paths are logged, never a request.

    :param shard: the shard's descriptor (templated), as the build returns it; map the operator over the
        build's output with ``.partial(task_id=..., conn_id=...).expand(shard=build.output)``.
    :param conn_id: the Claude connection (templated).
    :param storage_conn_id: the connection for the run folder's storage (templated).
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shard = shard
        self.conn_id = conn_id
        self.storage_conn_id = storage_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        shard = ShardDescriptor.from_dict(self.shard)
        folder = RunFolder(ObjectStoragePath(shard.run_uri, conn_id=self.storage_conn_id))
        requests_path = ObjectStoragePath(shard.uri, conn_id=self.storage_conn_id)
        hook = ClaudeBatchHook(conn_id=self.conn_id)
        try:
            result = submit_shard(
                ShardToSubmit(uri=shard.uri, request_count=shard.request_count, body_bytes=shard.body_bytes),
                api=_ShardBatchApi(hook, requests_path, shard),
                store=ShardStateFile(folder, shard.round, shard.index),
                fingerprint=lambda: fingerprint_shard(requests_path),
            )
        except BeforeSubmitError as exc:
            # Bad input or configuration, and no batch was made: a retry cannot fix it.
            raise AirflowFailException(str(exc)) from exc
        finally:
            hook.close()
        self.log.info(
            "Round %d, shard %d: batch %s with %d requests (%s)",
            shard.round,
            shard.index,
            result.batch_id,
            result.request_count,
            result.action,
        )
        ClaudeBatchLink.persist(context, base_url=hook.settings.base_url, batch_id=result.batch_id)
        return shard.evolve(batch_id=result.batch_id).to_dict()


class _ShardBatchApi:
    """The submit's two API calls for one shard, made through the hook."""

    def __init__(self, hook: Any, requests_path: ObjectStoragePath, shard: ShardDescriptor) -> None:
        self.hook = hook
        self.requests_path = requests_path
        self.shard = shard

    def create_batch(self) -> dict[str, Any]:
        try:
            return self.hook.create_batch_from_file(
                self.requests_path, self.shard.request_count, self.shard.body_bytes
            )
        except anthropic.APIStatusError as exc:
            raise CreateRefused(f"HTTP {exc.status_code} {exc.type or 'error'}") from exc

    def iter_batches(self, page_size: int) -> Iterator[dict[str, Any]]:
        return self.hook.iter_batches(limit=page_size)
