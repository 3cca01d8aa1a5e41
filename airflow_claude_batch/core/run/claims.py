"""The claims index: which shard owns which batch, for every run that shares a storage root.

``{storage}/_claims/{batch_id}.json`` is written when a shard's batch becomes known: right after its
create was answered, or after a lost create's batch was proven to hold the shard's marker. A shard
recovering a lost create then sets aside at once every same-size batch another shard has claimed, from
any DAG, run or pipeline under the root, instead of waiting for it to end to read its marker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.run.conditional_writes import create_only
from airflow_claude_batch.core.run.layout import claim_file, claims_folder
from airflow_claude_batch.core.run.storage import StoragePath, read_json
from airflow_claude_batch.exceptions import StorageError, WriteConflictError

CLAIM_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Claim:
    """One batch and the shard that owns it.

    :param batch_id: the batch.
    :param owner: the owning shard's state file (its URI).
    :param marker_id: the marker request the batch holds (``None`` for a batch made without one).
    :param claimed_at: when the claim was written (UTC, ISO 8601).
    """

    batch_id: str
    owner: str
    marker_id: str | None
    claimed_at: str
    schema_version: int = CLAIM_SCHEMA_VERSION


class ClaimsIndex:
    """The claims of one storage root.

    :param storage_root: the root shared by the runs (``RunFolder.storage_root``).
    """

    def __init__(self, storage_root: StoragePath, *, allow_unconditional: bool = False) -> None:
        self.storage_root = storage_root
        self.folder = claims_folder(storage_root)
        self.allow_unconditional = allow_unconditional

    def _path(self, batch_id: str) -> StoragePath:
        return claim_file(self.storage_root, batch_id)

    def read(self, batch_id: str) -> Claim | None:
        """Return the claim on ``batch_id``, ``None`` when nobody claimed it."""
        path = self._path(batch_id)
        data: Any = read_json(path)
        if data is None:
            return None
        try:
            if data.get("schema_version") != CLAIM_SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')!r}")
            return Claim(**{f.name: data[f.name] for f in dataclasses.fields(Claim)})
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StorageError(
                f"{path} is not a valid claim ({exc}); restore or delete it: it says which shard owns batch "
                f"{batch_id}"
            ) from None

    def write(self, claim: Claim) -> None:
        """Record ``claim`` whole or not at all, create-only: a batch has one owner.

        A claim already there naming the same owner is kept (a retry after a crash); one naming another
        owner raises ``StorageError``: two shards would hold one batch.
        """
        data = orjson.dumps(dataclasses.asdict(claim), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        try:
            create_only(self._path(claim.batch_id), data, allow_unconditional=self.allow_unconditional)
        except WriteConflictError:
            existing = self.read(claim.batch_id)
            if existing is None or existing.owner != claim.owner:
                raise StorageError(
                    f"batch {claim.batch_id} is already claimed by "
                    f"{existing.owner if existing else 'a claim that vanished'}, so {claim.owner} cannot "
                    "claim it; look at both state files before clearing anything "
                    f"({self._path(claim.batch_id)})"
                ) from None
