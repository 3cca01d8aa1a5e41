"""The Message Batches API's published facts: limits, the model catalogue and prices, and the request
rules the build checks before any spend (the emulator enforces the same ones).
"""

from __future__ import annotations

from airflow_claude_batch.core.api.headers import parse_retry_after, parse_timestamp
from airflow_claude_batch.core.api.limits import (
    ANTHROPIC_VERSION,
    MAX_BYTES_PER_SHARD,
    MAX_REQUESTS_PER_SHARD,
)
from airflow_claude_batch.core.api.model_check import check_model

__all__ = [
    "ANTHROPIC_VERSION",
    "MAX_BYTES_PER_SHARD",
    "MAX_REQUESTS_PER_SHARD",
    "check_model",
    "parse_retry_after",
    "parse_timestamp",
]
