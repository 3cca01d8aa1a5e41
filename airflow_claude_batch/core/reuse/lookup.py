"""The build's lookup: each rendered request is looked up before it is sharded; a hit is not sent.

The lookup streams: one request and one stored answer in memory at a time, each hit's row written to
``reused.jsonl`` as it is found, so a run of a million records with 900,000 hits holds no more than the
build without reuse (``bench/bench_reuse.py`` measures its time per record).
"""

from __future__ import annotations

from typing import IO

import orjson

from airflow_claude_batch.core.requests.rendering import EncodedRequest
from airflow_claude_batch.core.reuse.answer_key import line_key
from airflow_claude_batch.core.reuse.answer_store import AnswerStore
from airflow_claude_batch.core.reuse.reused_rows import reused_row


class AnswerLookup:
    """Answers requests from the store, writing a reused row for each hit.

    :param store: the answer store.
    :param out: where the reused rows go (``reused.jsonl``), or ``None`` to count only (a dry run).
    """

    def __init__(self, store: AnswerStore, out: IO[bytes] | None) -> None:
        self.store = store
        self.out = out
        self.hits = 0
        self.misses = 0
        #: What the reused answers cost when they were bought (the manifest's money saved).
        self.saved_usd = 0.0

    def answered(self, request: EncodedRequest) -> bool:
        """Whether the store answers ``request`` (its row is then written, and it is not to be sent)."""
        _, key = line_key(request.line)
        stored = self.store.get(key)
        if stored is None:
            self.misses += 1
            return False
        self.hits += 1
        self.saved_usd += stored.cost_usd
        if self.out is not None:
            self.out.write(orjson.dumps(reused_row(request.custom_id, stored)) + b"\n")
        return True
