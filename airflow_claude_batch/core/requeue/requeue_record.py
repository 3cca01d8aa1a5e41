"""``round-r/requeue.json``: what the requeue of a round decided, schema-versioned, written last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_claude_batch.core.requeue.requeue_rule import RequeueRule
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import read_json

REQUEUE_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class RequeueRecord:
    """What the requeue of round ``round`` decided; written last, so its presence means "done".

    :param round: the round that was read.
    :param requeued: requests written to round ``round + 1``.
    :param dead_lettered: requests written to ``round-r/dead-letter.jsonl``.
    :param held: requests neither requeued nor dead (pending, e.g. canceled by user).
    :param sync_succeeded: requests answered by the synchronous retry.
    :param sync_invalid_output: synchronous answers the parser/schema rejected.
    :param next_shards: the descriptors of round ``round + 1`` (as dicts).
    :param requeue_canceled: the rule's setting.
    :param requeue_user_canceled: the rule's setting.
    :param retry_errored_sync: whether errored requests were retried synchronously.
    :param budget_held: requests the budget kept from a synchronous retry or the next round, or a
        cancel that came during the requeue kept from their synchronous retry (pending, in
        ``round-r/budget-held.jsonl``).
    :param sync_fell_back: retryable errors requeued because the synchronous endpoint was missing,
        unreachable or refused them not by their own fault.
    :param sync_unknown: synchronous retries whose outcome is unknown (pending, possibly billed).
    :param shards_read: the round's shards this record decided (``None`` in a schema-1 record: every
        shard the round had then). A shard added to the round later (``add_new``) is requeued by a
        later run of the requeue, which adds to this record.
    :param canceled_shards: the shards decided after the run was canceled on purpose (their requeueable
        requests held as pending, reason ``canceled``).
    """

    round: int
    requeued: int
    dead_lettered: int
    held: int
    sync_succeeded: int = 0
    sync_invalid_output: int = 0
    next_shards: list[dict[str, Any]] = field(default_factory=list)
    requeue_canceled: bool = True
    requeue_user_canceled: bool = False
    retry_errored_sync: bool = False
    budget_held: int = 0
    sync_fell_back: int = 0
    sync_unknown: int = 0
    shards_read: list[int] | None = None
    canceled_shards: list[int] = field(default_factory=list)
    schema_version: int = REQUEUE_SCHEMA_VERSION

    @property
    def rule(self) -> RequeueRule:
        return RequeueRule(self.requeue_canceled, self.requeue_user_canceled)

    def rule_for(self, shard_index: int) -> RequeueRule:
        """The rule a shard's rows were decided with (held as canceled when the run was canceled)."""
        return replace(self.rule, run_canceled=shard_index in self.canceled_shards)

    def unread(self, shards: Sequence[ShardDescriptor]) -> list[ShardDescriptor]:
        """The round's shards this record has not decided (added to the round since, by ``add_new``)."""
        if self.shards_read is None:  # a schema-1 record: it read every shard the round had then
            return []
        read = set(self.shards_read)
        return [shard for shard in shards if shard.index not in read]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequeueRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def read_requeue_record(folder: RunFolder, round_index: int) -> RequeueRecord | None:
    """Return the requeue record of a round, or ``None`` when that round was not requeued."""
    data = read_json(folder.requeue_record(round_index))
    return None if data is None else RequeueRecord.from_dict(data)
