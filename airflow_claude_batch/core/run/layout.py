"""The run folder's layout: where every file of a run lives, in one place.

A run folder belongs to exactly one pipeline of one DAG run: several pipelines of a DAG (an eval
sweep of two models, say) and any number of runs share one storage root without sharing a file.

{storage}/{dag_id}/{run_id}/{pipeline_id}/
  round-{r}/shard-{nnnnn}.requests.jsonl   requests, one {"custom_id", "params"} per line
  round-{r}/shard-{nnnnn}.state.json       the submit state record
  round-{r}/shard-{nnnnn}/{outcome}.jsonl  results routed by outcome
  round-{r}/dead-letter.jsonl              requests of round r that retrying will not fix
  dead-letter.jsonl, pending.jsonl         the whole run's, written by the report
  cancel.json                              the run was canceled on purpose (``core/run/cancel_record.py``)
  manifest.json, report.html
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_claude_batch.core.run.storage import StoragePath
from airflow_claude_batch.core.run.url_secrets import masked_url, url_secrets
from airflow_claude_batch.exceptions import InputError

OUTCOMES = ("succeeded", "errored", "expired", "canceled")
#: The claims index's folder at the storage root (``core/run/claims.py``); no DAG may take its name.
CLAIMS_FOLDER = "_claims"
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:+~=-]{1,250}$")


def safe_segment(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one path segment; otherwise raise ``InputError``.

    Run folders are built only from validated segments, so no id can climb out of the run folder.
    """
    if not isinstance(value, str) or not _SEGMENT.match(value) or value in (".", "..") or ".." in value:
        raise InputError(
            f"{what} {value!r} cannot be used in a storage path; use letters, digits and _ . : + ~ = -"
        )
    return value


def _number(value: int, what: str) -> int:
    """Return ``value`` if it is a whole number >= 0 (rounds and shards come through XCom descriptors)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(
            f"{what} {value!r} is not a whole number >= 0, so it cannot be used in a storage path; pass the "
            "shard descriptors the tasks of the run returned, unchanged"
        )
    return value


@dataclass(frozen=True)
class RunFolder:
    """Paths of one pipeline run's files under ``root`` (``{storage}/{dag_id}/{run_id}/{pipeline_id}``)."""

    root: StoragePath

    @classmethod
    def for_run(cls, storage: StoragePath, dag_id: str, run_id: str, pipeline_id: str) -> RunFolder:
        """Return the run folder of pipeline ``pipeline_id`` (its task group's id) in DAG run ``run_id``."""
        if dag_id == CLAIMS_FOLDER:
            raise InputError(f"dag_id {dag_id!r} is the storage root's claims folder; rename the DAG")
        if url_secrets(str(storage)):
            # The run folder's URI is written into every descriptor (XCom), state file and manifest.
            raise InputError(
                f"the storage URI {masked_url(str(storage))} carries credentials (user:password@ or a "
                "token in its query); they would be written into every state file, XCom value and "
                "manifest: put them in a connection and pass its id as storage_conn_id instead"
            )
        return cls(
            storage
            / safe_segment(dag_id, "dag_id")
            / safe_segment(run_id, "run_id")
            / safe_segment(pipeline_id, "pipeline_id")
        )

    @property
    def storage_root(self) -> StoragePath:
        """The storage root the run folder lives under (shared by every pipeline and run)."""
        return self.root.parent.parent.parent  # type: ignore[attr-defined]

    def round_dir(self, round_index: int) -> StoragePath:
        return self.root / f"round-{_number(round_index, 'round')}"

    def shard_requests(self, round_index: int, shard_index: int) -> StoragePath:
        return self.round_dir(round_index) / f"shard-{_number(shard_index, 'shard index'):05d}.requests.jsonl"

    def shard_state(self, round_index: int, shard_index: int) -> StoragePath:
        return self.round_dir(round_index) / f"shard-{_number(shard_index, 'shard index'):05d}.state.json"

    def shard_outcome(self, round_index: int, shard_index: int, outcome: str) -> StoragePath:
        if outcome not in (*OUTCOMES, "invalid_output", "refused"):
            raise ValueError(f"unknown outcome {outcome!r}")
        shard = f"shard-{_number(shard_index, 'shard index'):05d}"
        return self.round_dir(round_index) / shard / f"{outcome}.jsonl"

    def shard_marker(self, round_index: int, shard_index: int) -> StoragePath:
        """The shard's marker result: the proof its batch was its own, and what the marker cost."""
        shard = f"shard-{_number(shard_index, 'shard index'):05d}"
        return self.round_dir(round_index) / shard / "marker.json"

    def round_dead_letter(self, round_index: int) -> StoragePath:
        return self.round_dir(round_index) / "dead-letter.jsonl"

    @property
    def dead_letter(self) -> StoragePath:
        return self.root / "dead-letter.jsonl"

    @property
    def pending(self) -> StoragePath:
        return self.root / "pending.jsonl"

    @property
    def rejected(self) -> StoragePath:
        """The records the build set aside (``on_invalid_record="skip"``), with their rule and location."""
        return self.root / "rejected.jsonl"

    @property
    def manifest(self) -> StoragePath:
        return self.root / "manifest.json"

    @property
    def report(self) -> StoragePath:
        return self.root / "report.html"

    @property
    def cancel_record(self) -> StoragePath:
        """``cancel.json``: present when the run was canceled on purpose (no create, round or retry after)."""
        return self.root / "cancel.json"

    @property
    def estimate(self) -> StoragePath:
        return self.root / "estimate.json"
