"""The Message Batches API's published facts: limits, the model catalogue and prices, and the request
rules the build checks before any spend (the emulator enforces the same ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
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

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "headers": ("parse_retry_after", "parse_timestamp"),
        "limits": ("ANTHROPIC_VERSION", "MAX_BYTES_PER_SHARD", "MAX_REQUESTS_PER_SHARD"),
        "model_check": ("check_model",),
    },
)
