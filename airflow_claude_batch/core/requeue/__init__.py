"""After a round: which requests go to the next round, which are retried synchronously, dead-lettered or
held as pending, the round's requeue record, and a finished run's pending records sent again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
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

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "pending_records": ("write_pending_records",),
        "requeue": ("requeue_round",),
        "requeue_rule": ("RequeueRule",),
        "sync_retry": ("DEFAULT_SYNC_CONCURRENCY", "SendMessage", "SyncRequestError", "SyncRetry"),
    },
)
