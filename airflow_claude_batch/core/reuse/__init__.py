"""The answer store: a good answer is paid for once, ever. Requests are keyed by what the API answers
to (``answer_key``); the build looks each one up before it is sharded, and a hit becomes a reused row
instead of a request; the fanout and the synchronous retry store the good answers they get. The store
lives under the storage root (``store_layout``) and is shared by every pipeline using the root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.reuse.answer_key import answer_key, line_key
    from airflow_claude_batch.core.reuse.answer_store import (
        AnswerStore,
        ReusePolicy,
        StoredAnswer,
        parse_reuse_answers,
        prune,
    )
    from airflow_claude_batch.core.reuse.lookup import AnswerLookup
    from airflow_claude_batch.core.reuse.reused_rows import (
        REUSED_FROM,
        reused_row,
        saved_usd,
        store_answers,
        store_shard_answers,
        store_sync_answers,
    )
    from airflow_claude_batch.core.reuse.store_layout import ANSWERS_FOLDER, AnswerStoreLayout

__all__ = [
    "ANSWERS_FOLDER",
    "REUSED_FROM",
    "AnswerLookup",
    "AnswerStore",
    "AnswerStoreLayout",
    "ReusePolicy",
    "StoredAnswer",
    "answer_key",
    "line_key",
    "parse_reuse_answers",
    "prune",
    "reused_row",
    "saved_usd",
    "store_answers",
    "store_shard_answers",
    "store_sync_answers",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "answer_key": ("answer_key", "line_key"),
        "answer_store": ("AnswerStore", "ReusePolicy", "StoredAnswer", "parse_reuse_answers", "prune"),
        "lookup": ("AnswerLookup",),
        "reused_rows": (
            "REUSED_FROM",
            "reused_row",
            "saved_usd",
            "store_answers",
            "store_shard_answers",
            "store_sync_answers",
        ),
        "store_layout": ("ANSWERS_FOLDER", "AnswerStoreLayout"),
    },
)
