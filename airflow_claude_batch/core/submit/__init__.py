"""Submitting a shard exactly once: the state machine and its state file, the intent race, recovery of
a lost create's batch, pacing under the API's capacity, the create body, and cancelling a run's batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.submit.batch_cancel import (
        RecordedBatch,
        cancel_recorded,
        pipeline_ids,
        recorded_batches,
        run_root,
        stopped_round,
        stopped_shards,
    )
    from airflow_claude_batch.core.submit.create_body import iter_batch_body, sent_body_size
    from airflow_claude_batch.core.submit.pacing import (
        DEFAULT_PACING_TIMEOUT,
        PACED_STATUSES,
        CreateThrottled,
        ShardLine,
    )
    from airflow_claude_batch.core.submit.state import (
        FAILED,
        ShardStateFile,
        fingerprint_shard,
        format_utc,
        parse_utc,
        read_state,
        utc_now,
    )
    from airflow_claude_batch.core.submit.submission import submit_shard
    from airflow_claude_batch.core.submit.submit_inputs import (
        DEFAULT_RECHECK,
        DEFAULT_SETTLE_MARGIN,
        CreateOutcomeUnknown,
        CreateRefused,
        ShardToSubmit,
        SubmitResult,
        SubmitTiming,
        SubmitWait,
    )

__all__ = [
    "DEFAULT_PACING_TIMEOUT",
    "DEFAULT_RECHECK",
    "DEFAULT_SETTLE_MARGIN",
    "FAILED",
    "PACED_STATUSES",
    "CreateOutcomeUnknown",
    "CreateRefused",
    "CreateThrottled",
    "RecordedBatch",
    "ShardLine",
    "ShardStateFile",
    "ShardToSubmit",
    "SubmitResult",
    "SubmitTiming",
    "SubmitWait",
    "cancel_recorded",
    "fingerprint_shard",
    "format_utc",
    "iter_batch_body",
    "parse_utc",
    "pipeline_ids",
    "read_state",
    "recorded_batches",
    "run_root",
    "sent_body_size",
    "stopped_round",
    "stopped_shards",
    "submit_shard",
    "utc_now",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "batch_cancel": (
            "RecordedBatch",
            "cancel_recorded",
            "pipeline_ids",
            "recorded_batches",
            "run_root",
            "stopped_round",
            "stopped_shards",
        ),
        "create_body": ("iter_batch_body", "sent_body_size"),
        "pacing": ("DEFAULT_PACING_TIMEOUT", "PACED_STATUSES", "CreateThrottled", "ShardLine"),
        "state": (
            "FAILED",
            "ShardStateFile",
            "fingerprint_shard",
            "format_utc",
            "parse_utc",
            "read_state",
            "utc_now",
        ),
        "submission": ("submit_shard",),
        "submit_inputs": (
            "DEFAULT_RECHECK",
            "DEFAULT_SETTLE_MARGIN",
            "CreateOutcomeUnknown",
            "CreateRefused",
            "ShardToSubmit",
            "SubmitResult",
            "SubmitTiming",
            "SubmitWait",
        ),
    },
)
