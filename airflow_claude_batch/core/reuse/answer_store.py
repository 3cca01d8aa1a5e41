"""The answer store: good answers kept under their key, read by any pipeline sharing the storage root.

- **Only good answers**: the caller stores succeeded rows (they passed the parser and the schema) and a
  synchronous retry's succeeded answer; errored, expired, refused and invalid rows never reach it.
- **Whole or nothing, written once while it is used**: an entry is written with the storage's
  create-only write (``core/run/conditional_writes.create_only``: local ``os.link``, S3
  ``If-None-Match: *``). Of two runs storing one key at once, the first wins and the second keeps it.
  An entry the store's lookups no longer take (past the maximum age, another schema, unreadable) is
  replaced by the answer just paid for, only if it is still the entry read (``replace_if``).
- **Schema-versioned**: an entry of another ``schema_version``, or one that cannot be read, is a miss
  (the request is sent), never an error.
- **Pruned by age**: a lookup with a maximum age (``reuse_answers="30d"``) treats older entries as
  misses; :func:`prune` removes them for good (see ``docs/architecture.md``, "The answer store").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from airflow_claude_batch.core.reuse.store_layout import AnswerStoreLayout
from airflow_claude_batch.core.run.conditional_writes import create_only, read_versioned, replace_if
from airflow_claude_batch.core.run.storage import StoragePath, read_bytes
from airflow_claude_batch.exceptions import InputError, WriteConflictError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class ReusePolicy:
    """Whether answers are reused, and how old a stored answer may be (``None``: any age)."""

    max_age: timedelta | None = None


def parse_reuse_answers(value: Any) -> ReusePolicy | None:
    """Read ``reuse_answers``: ``False`` (off), ``True`` (any age) or a maximum age (``"30d"``, ``"12h"``).

    :raises InputError: any other value.
    """
    if value is None or value is False or value in ("", "False", "false", "None"):
        return None
    if value is True or value in ("True", "true"):
        return ReusePolicy()
    match = _AGE.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InputError(
            f"reuse_answers must be False, True or a maximum age such as '30d', '12h' or '90m', got {value!r}"
        )
    return ReusePolicy(timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}))


@dataclass(frozen=True)
class StoredAnswer:
    """One good answer, as the store keeps it.

    :param key: the request's answer key (``answer_key.answer_key``).
    :param answer: the succeeded row's answer fields (``model``, ``text``, ``parsed``, ``tool_calls``,
        ``stop_reason``, ``usage``...), without the record's ``custom_id`` and ``passthrough``.
    :param cost_usd: what the answer cost when it was bought (the money meter's figure on its row).
    :param run: the run folder that bought it.
    :param batch: the batch it came from (``None`` for a synchronous retry).
    :param custom_id: the request's id in that run.
    :param stored_at: when it was stored (UTC, ISO 8601).
    """

    key: str
    answer: Mapping[str, Any]
    cost_usd: float
    run: str
    batch: str | None
    custom_id: str
    stored_at: str = field(default_factory=lambda: _now().isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "schema_version": self.schema_version,
                "key": self.key,
                "stored_at": self.stored_at,
                "run": self.run,
                "batch": self.batch,
                "custom_id": self.custom_id,
                "cost_usd": self.cost_usd,
                "answer": dict(self.answer),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredAnswer | None:
        """The entry, or ``None`` when it is of another schema version or not readable."""
        try:
            entry = orjson.loads(data)
            if entry.get("schema_version") != SCHEMA_VERSION:
                return None
            return cls(
                key=entry["key"],
                answer=entry["answer"],
                cost_usd=float(entry["cost_usd"]),
                run=entry["run"],
                batch=entry.get("batch"),
                custom_id=entry["custom_id"],
                stored_at=entry["stored_at"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def stored_time(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.stored_at)
        except ValueError:
            return None


class AnswerStore:
    """Look up and store answers under one storage root.

    :param storage_root: the root the run folders live under.
    :param policy: the maximum age of an answer a lookup returns.
    :param allow_unconditional: allow a storage without create-only writes (the weaker mode).
    """

    def __init__(
        self,
        storage_root: StoragePath,
        policy: ReusePolicy | None = None,
        *,
        allow_unconditional: bool = False,
    ) -> None:
        self.layout = AnswerStoreLayout(storage_root)
        self.policy = policy or ReusePolicy()
        self.allow_unconditional = allow_unconditional
        self._oldest = _now() - self.policy.max_age if self.policy.max_age is not None else None

    def get(self, key: str) -> StoredAnswer | None:
        """The answer stored under ``key`` and young enough, else ``None`` (a miss: send the request)."""
        data = read_bytes(self.layout.entry(key))
        if data is None:
            return None
        answer = StoredAnswer.from_bytes(data)
        if answer is None or answer.key != key or not self._young_enough(answer):
            return None
        return answer

    def put(self, answer: StoredAnswer) -> bool:
        """Store ``answer``; ``False`` when its key holds an answer a lookup of this store still takes
        (the first one stays).

        An entry this store's lookups no longer take (older than its maximum age, of another schema, or
        unreadable) is replaced by ``answer``, conditionally on being the entry that was read: the
        request was just paid for again, and without the replacement every later run would pay for
        it too. Of two runs replacing one entry at once, the first wins.
        """
        path = self.layout.entry(answer.key)
        data = answer.to_bytes()
        try:
            create_only(path, data, allow_unconditional=self.allow_unconditional)
        except WriteConflictError:
            return self._replace_if_unusable(path, data)
        return True

    def _replace_if_unusable(self, path: StoragePath, data: bytes) -> bool:
        current = read_versioned(path)
        if current is None:
            return False  # pruned meanwhile: the next run stores its answer afresh
        held = StoredAnswer.from_bytes(current.data)
        if held is not None and self._young_enough(held):
            return False
        try:
            replace_if(path, data, current.version, allow_unconditional=self.allow_unconditional)
        except WriteConflictError:
            return False
        return True

    def _young_enough(self, answer: StoredAnswer) -> bool:
        if self._oldest is None:
            return True
        stored = answer.stored_time()
        return stored is not None and stored >= self._oldest


def prune(storage_root: StoragePath, older_than: timedelta) -> int:
    """Remove the stored answers older than ``older_than`` (and unreadable ones); return how many.

    Safe beside running pipelines: a lookup that loses its entry to the prune sends the request.
    """
    oldest = _now() - older_than
    removed = 0
    for path in AnswerStoreLayout(storage_root).entries():
        data = read_bytes(path)
        answer = StoredAnswer.from_bytes(data) if data is not None else None
        stored = answer.stored_time() if answer is not None else None
        if stored is None or stored < oldest:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _now() -> datetime:
    return datetime.now(timezone.utc)
