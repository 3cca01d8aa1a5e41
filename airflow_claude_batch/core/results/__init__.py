"""A batch's results: the fanout of one shard into outcome rows (priced), reconciliation with its
requests, reading an answer against the output contract, the flat output, the failure threshold.
"""

from __future__ import annotations

from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.failure_threshold import FailureThreshold
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.results.flat_output import iter_succeeded_rows, write_flat_output

__all__ = ["FailureThreshold", "OutputValidator", "fan_out_shard", "iter_succeeded_rows", "write_flat_output"]
