"""Records become batch requests: input sources, rendering and its checks, unique ids, structured output,
passthrough columns, the marker request, the cacheable prefix, and shard files within the API's limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.requests.passthrough import parse_fields, write_passthrough
    from airflow_claude_batch.core.requests.rendering import RenderCallable, RequestTemplate
    from airflow_claude_batch.core.requests.sharding import ShardLimits
    from airflow_claude_batch.core.requests.sources import (
        CallableRecords,
        FileRecords,
        RecordSource,
        expand_glob,
        split_glob,
    )
    from airflow_claude_batch.core.requests.structured_output import choose_mode, request_additions

__all__ = [
    "CallableRecords",
    "FileRecords",
    "RecordSource",
    "RenderCallable",
    "RequestTemplate",
    "ShardLimits",
    "choose_mode",
    "expand_glob",
    "parse_fields",
    "request_additions",
    "split_glob",
    "write_passthrough",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "passthrough": ("parse_fields", "write_passthrough"),
        "rendering": ("RenderCallable", "RequestTemplate"),
        "sharding": ("ShardLimits",),
        "sources": ("CallableRecords", "FileRecords", "RecordSource", "expand_glob", "split_glob"),
        "structured_output": ("choose_mode", "request_additions"),
    },
)
