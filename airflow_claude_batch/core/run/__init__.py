"""A run on storage: the run folder's layout, whole-or-nothing and exclusive writes, the claims index,
the shard descriptor, the files a round shares, the run's cancel record and the flat output's owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.run.cancel_record import is_canceled, remove_cancel, write_cancel
    from airflow_claude_batch.core.run.claims import ClaimsIndex
    from airflow_claude_batch.core.run.layout import RunFolder
    from airflow_claude_batch.core.run.line_reader import DEFAULT_CHUNK_SIZE, iter_records
    from airflow_claude_batch.core.run.outcomes import DISPOSITIONS, Disposition
    from airflow_claude_batch.core.run.output_owner import OutputClaim, claim_output, place_output
    from airflow_claude_batch.core.run.shards import ShardDescriptor
    from airflow_claude_batch.core.run.storage import StoragePath, read_json, readable_uri, write_json
    from airflow_claude_batch.core.run.url_secrets import mask_urls, masked_url, url_secrets

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DISPOSITIONS",
    "ClaimsIndex",
    "Disposition",
    "OutputClaim",
    "RunFolder",
    "ShardDescriptor",
    "StoragePath",
    "claim_output",
    "is_canceled",
    "iter_records",
    "mask_urls",
    "masked_url",
    "place_output",
    "read_json",
    "readable_uri",
    "remove_cancel",
    "url_secrets",
    "write_cancel",
    "write_json",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "cancel_record": ("is_canceled", "remove_cancel", "write_cancel"),
        "claims": ("ClaimsIndex",),
        "layout": ("RunFolder",),
        "line_reader": ("DEFAULT_CHUNK_SIZE", "iter_records"),
        "outcomes": ("DISPOSITIONS", "Disposition"),
        "output_owner": ("OutputClaim", "claim_output", "place_output"),
        "shards": ("ShardDescriptor",),
        "storage": ("StoragePath", "read_json", "readable_uri", "write_json"),
        "url_secrets": ("mask_urls", "masked_url", "url_secrets"),
    },
)
