"""Stored answers ↔ outcome rows: a good row stored under its request's key, a hit made a row again.

A reused answer is a first-class ``succeeded`` row of the run that reuses it (in ``reused.jsonl``, one
of the run's outcome files, and in the flat output), with the record's own ``custom_id``, ``cost_usd``
0 (this run paid nothing for it) and ``reused_from``: the run, batch and ``custom_id`` that bought it,
when it was stored, and what it cost then (``cost_usd``, at the price the original paid), which the
manifest counts as saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_claude_batch.core.requests.request_lines import iter_request_lines
from airflow_claude_batch.core.reuse.answer_key import line_key
from airflow_claude_batch.core.reuse.answer_store import AnswerStore, StoredAnswer
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import Outcome
from airflow_claude_batch.core.run.storage import StoragePath, iter_jsonl

#: The field of a reused row that says where its answer came from.
REUSED_FROM = "reused_from"
#: Fields of a row that belong to the record, not to the answer (never stored).
_RECORD_FIELDS = frozenset({"custom_id", "passthrough", "outcome", "cost_usd", REUSED_FROM})


def reused_row(custom_id: str, stored: StoredAnswer) -> dict[str, Any]:
    """The ``succeeded`` row of a record answered from the store."""
    answer = dict(stored.answer)
    usage = answer.pop("usage", None)
    return {
        "custom_id": custom_id,
        **answer,
        "cost_usd": 0.0,
        REUSED_FROM: {
            "run": stored.run,
            "batch": stored.batch,
            "custom_id": stored.custom_id,
            "stored_at": stored.stored_at,
            "cost_usd": stored.cost_usd,
            "usage": usage,
        },
    }


def saved_usd(row: Mapping[str, Any]) -> float:
    """What a reused row's answer cost when it was bought (``0.0`` for a row that was not reused)."""
    origin = row.get(REUSED_FROM)
    cost = origin.get("cost_usd") if isinstance(origin, Mapping) else None
    return float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0


def stored_answer(key: str, row: Mapping[str, Any], *, run: str, batch: str | None) -> StoredAnswer:
    """The store's entry of a succeeded row bought by ``run`` (``batch`` ``None``: a synchronous retry)."""
    cost = row.get("cost_usd")
    return StoredAnswer(
        key=key,
        answer={name: value for name, value in row.items() if name not in _RECORD_FIELDS},
        cost_usd=float(cost) if isinstance(cost, (int, float)) else 0.0,
        run=run,
        batch=batch,
        custom_id=str(row["custom_id"]),
    )


def store_answers(
    store: AnswerStore,
    requests_path: StoragePath,
    rows: Iterable[Mapping[str, Any]],
    *,
    run: str,
    batch: str | None,
) -> int:
    """Store the good answers among ``rows`` (a shard's), each under its request's key.

    Only rows whose ``outcome`` is ``succeeded`` (a synchronous retry's rows say so) or that come from a
    ``succeeded.jsonl`` (no ``outcome`` field) and were not themselves reused are stored; the shard's
    requests file gives each ``custom_id`` its key (held for one shard, at most 100,000 ids).

    :returns: the answers stored now (an answer already stored under its key is kept, not counted).
    """
    keys = {custom_id: line_key(line)[1] for custom_id, line in iter_request_lines(requests_path)}
    stored = 0
    for row in rows:
        if row.get("outcome", Outcome.SUCCEEDED) != Outcome.SUCCEEDED or REUSED_FROM in row:
            continue
        key = keys.get(str(row.get("custom_id")))
        if key is not None and store.put(stored_answer(key, row, run=run, batch=batch)):
            stored += 1
    return stored


def store_shard_answers(
    store: AnswerStore, folder: RunFolder, round_index: int, shard_index: int, batch: str
) -> int:
    """Store a fanned-out shard's ``succeeded`` rows (its invalid, refused, errored, expired and canceled
    rows are in other files and never stored)."""
    succeeded = folder.shard_outcome(round_index, shard_index, Outcome.SUCCEEDED)
    if not succeeded.exists():
        return 0
    return store_answers(
        store,
        folder.shard_requests(round_index, shard_index),
        iter_jsonl(succeeded),
        run=str(folder.root),
        batch=batch,
    )


def store_sync_answers(store: AnswerStore, folder: RunFolder, round_index: int, shard_index: int) -> int:
    """Store a shard's synchronous retries that succeeded (``batch`` ``None``: no batch bought them)."""
    retries = folder.shard_sync_retry(round_index, shard_index)
    if not retries.exists():
        return 0
    return store_answers(
        store,
        folder.shard_requests(round_index, shard_index),
        iter_jsonl(retries),
        run=str(folder.root),
        batch=None,
    )
