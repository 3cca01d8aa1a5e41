"""After a round: which requests go to the next round, which are retried synchronously, dead-lettered or
held as pending, the round's requeue record, and a finished run's pending records sent again.
"""

from __future__ import annotations

from airflow_claude_batch.core.requeue.pending_records import write_pending_records
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.requeue_rule import RequeueRule
from airflow_claude_batch.core.requeue.sync_retry import (
    DEFAULT_SYNC_CONCURRENCY,
    SendMessage,
    SyncRequestError,
    SyncRetry,
)

__all__ = [
    "DEFAULT_SYNC_CONCURRENCY",
    "RequeueRule",
    "SendMessage",
    "SyncRequestError",
    "SyncRetry",
    "requeue_round",
    "write_pending_records",
]
