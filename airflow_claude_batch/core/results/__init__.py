"""A batch's results: the fanout of one shard into outcome rows (priced), reconciliation with its
requests, reading an answer against the output contract, the flat output, the failure threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.results.answer_parsing import OutputValidator
    from airflow_claude_batch.core.results.failure_threshold import FailureThreshold
    from airflow_claude_batch.core.results.fanout import fan_out_shard
    from airflow_claude_batch.core.results.flat_output import iter_succeeded_rows, write_flat_output

__all__ = ["FailureThreshold", "OutputValidator", "fan_out_shard", "iter_succeeded_rows", "write_flat_output"]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "answer_parsing": ("OutputValidator",),
        "failure_threshold": ("FailureThreshold",),
        "fanout": ("fan_out_shard",),
        "flat_output": ("iter_succeeded_rows", "write_flat_output"),
    },
)
