"""The shard descriptor: the small record that travels through XCom from build to report.

It carries paths, ids, counts and money, never requests or results. Each task returns a copy enriched
with what it learned (``batch_id`` after submit, ``request_counts`` after the wait).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SHARD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ShardDescriptor:
    """One shard of one round of a run.

    :param run_uri: the run folder (``{storage}/{dag_id}/{run_id}/{pipeline_id}``) as a URI string.
    :param round: the round (0 for the first submission, then one per requeue).
    :param index: the shard's number within its round.
    :param uri: the shard's requests file.
    :param request_count: requests in the shard.
    :param body_bytes: size of the create body exactly as it is sent.
    :param estimated_cost_usd: upper-bound estimate at batch prices.
    :param batch_id: set once submitted.
    :param marker_id: the custom_id of the batch's marker request (``core/requests/marker.py``), set with
        ``batch_id``; its result line is kept out of the outcome files.
    :param request_counts: the batch's final counts, set once it ended.
    :param processing_status: the batch's last known status.
    :param outcome_counts: rows written per outcome by the fanout.
    :param tokens: token totals by kind from the fanout (input, output, cache write, cache read).
    :param cost_usd: actual cost at batch prices from the fanout.
    """

    run_uri: str
    round: int
    index: int
    uri: str
    request_count: int
    body_bytes: int
    estimated_cost_usd: float = 0.0
    batch_id: str | None = None
    marker_id: str | None = None
    request_counts: dict[str, int] = field(default_factory=dict)
    processing_status: str | None = None
    outcome_counts: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    schema_version: int = SHARD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardDescriptor:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def evolve(self, **changes: Any) -> ShardDescriptor:
        return dataclasses.replace(self, **changes)
