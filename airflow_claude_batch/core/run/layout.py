"""The run folder's layout: where every file of a run lives, in one place.

A run folder belongs to exactly one pipeline of one DAG run: several pipelines of a DAG (an eval
sweep of two models, say) and any number of runs share one storage root without sharing a file.

{storage}/{dag_id}/{run_id}/{pipeline_id}/
  round-{r}/shard-{nnnnn}.requests.jsonl   requests, one {"custom_id", "params"} per line
  round-{r}/shard-{nnnnn}.state.json       the submit state record
  round-{r}/shard-{nnnnn}/{outcome}.jsonl  results routed by outcome (``core/run/outcomes.py``)
  round-{r}/shard-{nnnnn}/marker.json      the marker request's result
  round-{r}/shard-{nnnnn}/sync_retry.jsonl the shard's synchronous retries
  round-{r}/shards.json                    the round's shard descriptors, written last
  round-{r}/requeue.json                   what the requeue of the round decided, written last
  round-{r}/budget-held.jsonl              pending rows of requests the budget kept from being sent
  round-{r}/dead-letter.jsonl              requests of round r that retrying will not fix
  dead-letter.jsonl, pending.jsonl         the whole run's, written by the report
  rejected.jsonl                           records the build set aside
  estimate.json, input.json                the build's estimate and input fingerprint
  answered-earlier.json                    records earlier runs answered (``add_new``)
  passthrough.jsonl                        the input fields carried into every outcome row
  reused.jsonl                             succeeded rows answered from the answer store (``core/reuse``)
  cancel.json                              the run was canceled on purpose (``core/run/cancel_record.py``)
  manifest.json, report.html
{storage}/_claims/{batch_id}.json          which shard owns which batch (``core/run/claims.py``)

No other module spells one of these names (``tests/core/run/test_layout.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES, Disposition
from airflow_claude_batch.core.run.storage import StoragePath, folder_names
from airflow_claude_batch.core.run.url_secrets import masked_url, url_secrets
from airflow_claude_batch.exceptions import InputError

#: The claims index's folder at the storage root (``core/run/claims.py``); no DAG may take its name.
CLAIMS_FOLDER = "_claims"
#: The answer store's folder at the storage root (``core/reuse/store_layout.py``).
ANSWERS_FOLDER = "_answers"
#: Folders of the storage root that are not DAGs: no DAG may take their names.
ROOT_FOLDERS = (CLAIMS_FOLDER, ANSWERS_FOLDER)
_ROUND_DIR = re.compile(r"^round-(\d+)$")
_SHARD_DIR = re.compile(r"^shard-(\d{5})$")
_STATE_FILE = re.compile(r"^shard-(\d{5})\.state\.json$")
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


def claims_folder(storage_root: StoragePath) -> StoragePath:
    """The storage root's claims index (``{storage}/_claims``)."""
    return storage_root / CLAIMS_FOLDER


def claim_file(storage_root: StoragePath, batch_id: str) -> StoragePath:
    """The claim on ``batch_id`` (``{storage}/_claims/{batch_id}.json``)."""
    return claims_folder(storage_root) / f"{safe_segment(batch_id, 'batch id')}.json"


@dataclass(frozen=True)
class RunFolder:
    """Paths of one pipeline run's files under ``root`` (``{storage}/{dag_id}/{run_id}/{pipeline_id}``)."""

    root: StoragePath

    #: The run's files, by the name the manifest lists them under (relative to the run folder).
    MANIFEST: ClassVar[str] = "manifest.json"
    REPORT: ClassVar[str] = "report.html"
    DEAD_LETTER: ClassVar[str] = "dead-letter.jsonl"
    PENDING: ClassVar[str] = "pending.jsonl"
    REJECTED: ClassVar[str] = "rejected.jsonl"
    _ESTIMATE: ClassVar[str] = "estimate.json"
    _INPUT_FINGERPRINT: ClassVar[str] = "input.json"
    _ANSWERED_EARLIER: ClassVar[str] = "answered-earlier.json"
    _PASSTHROUGH: ClassVar[str] = "passthrough.jsonl"
    _REUSED: ClassVar[str] = "reused.jsonl"
    _CANCEL_RECORD: ClassVar[str] = "cancel.json"
    _SHARD_LIST: ClassVar[str] = "shards.json"
    _REQUEUE_RECORD: ClassVar[str] = "requeue.json"
    _BUDGET_HELD: ClassVar[str] = "budget-held.jsonl"
    _MARKER: ClassVar[str] = "marker.json"
    _SYNC_RETRY: ClassVar[str] = "sync_retry.jsonl"

    @classmethod
    def for_run(cls, storage: StoragePath, dag_id: str, run_id: str, pipeline_id: str) -> RunFolder:
        """Return the run folder of pipeline ``pipeline_id`` (its task group's id) in DAG run ``run_id``."""
        if dag_id in ROOT_FOLDERS:
            raise InputError(
                f"dag_id {dag_id!r} is a folder the storage root keeps for itself "
                f"({', '.join(ROOT_FOLDERS)}); rename the DAG"
            )
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

    @classmethod
    def run_files(cls) -> dict[str, str]:
        """The run's files the manifest lists, ``{name: file}`` relative to the run folder."""
        return {
            "manifest": cls.MANIFEST,
            "report": cls.REPORT,
            "dead_letter": cls.DEAD_LETTER,
            Disposition.PENDING.value: cls.PENDING,
            Disposition.REJECTED.value: cls.REJECTED,
        }

    @staticmethod
    def outcome_file_name(outcome: str) -> str:
        """The name of a shard's file of ``outcome`` rows (``{outcome}.jsonl``)."""
        if outcome not in ROW_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        return f"{outcome}.jsonl"

    @property
    def storage_root(self) -> StoragePath:
        """The storage root the run folder lives under (shared by every pipeline and run)."""
        return self.root.parent.parent.parent  # type: ignore[attr-defined]

    def sibling(self, run_id: str) -> RunFolder:
        """The same pipeline's folder in another run ``run_id`` of the DAG."""
        return RunFolder(self.root.parent.parent / run_id / self.root.name)  # type: ignore[attr-defined]

    # -- a round and its shards

    def round_dir(self, round_index: int) -> StoragePath:
        return self.root / f"round-{_number(round_index, 'round')}"

    def round_indexes(self) -> list[int]:
        """The rounds the run folder holds, in order."""
        return sorted(
            int(match.group(1)) for name in folder_names(self.root) if (match := _ROUND_DIR.match(name))
        )

    def shard_list(self, round_index: int) -> StoragePath:
        """``round-r/shards.json``: the round's descriptors, written last by the build or the requeue."""
        return self.round_dir(round_index) / self._SHARD_LIST

    def requeue_record(self, round_index: int) -> StoragePath:
        """``round-r/requeue.json``: what the requeue of round ``r`` decided, written last."""
        return self.round_dir(round_index) / self._REQUEUE_RECORD

    def budget_held(self, round_index: int) -> StoragePath:
        """``round-r/budget-held.jsonl``: pending rows of requests the budget kept from being sent."""
        return self.round_dir(round_index) / self._BUDGET_HELD

    def round_dead_letter(self, round_index: int) -> StoragePath:
        return self.round_dir(round_index) / self.DEAD_LETTER

    @staticmethod
    def _shard(shard_index: int) -> str:
        return f"shard-{_number(shard_index, 'shard index'):05d}"

    def shard_requests(self, round_index: int, shard_index: int) -> StoragePath:
        return self.round_dir(round_index) / f"{self._shard(shard_index)}.requests.jsonl"

    def shard_state(self, round_index: int, shard_index: int) -> StoragePath:
        return self.round_dir(round_index) / f"{self._shard(shard_index)}.state.json"

    def state_file_shards(self, round_index: int) -> list[int]:
        """The shards of a round that have a state file, in order."""
        names = folder_names(self.round_dir(round_index))
        return [int(match.group(1)) for name in names if (match := _STATE_FILE.match(name))]

    def shard_dir(self, round_index: int, shard_index: int) -> StoragePath:
        """``round-r/shard-nnnnn/``: the shard's outcome files, its marker and synchronous retries."""
        return self.round_dir(round_index) / self._shard(shard_index)

    def shard_dirs(self, round_index: int) -> list[int]:
        """The shards of a round that have a folder of outcome files, in order."""
        names = folder_names(self.round_dir(round_index))
        return [int(match.group(1)) for name in names if (match := _SHARD_DIR.match(name))]

    def shard_outcome(self, round_index: int, shard_index: int, outcome: str) -> StoragePath:
        name = self.outcome_file_name(outcome)
        return self.shard_dir(round_index, shard_index) / name

    def shard_marker(self, round_index: int, shard_index: int) -> StoragePath:
        """The shard's marker result: the proof its batch was its own, and what the marker cost."""
        return self.shard_dir(round_index, shard_index) / self._MARKER

    def shard_sync_retry(self, round_index: int, shard_index: int) -> StoragePath:
        """The shard's ``sync_retry.jsonl`` (beside its outcome files): its synchronous retries."""
        return self.shard_dir(round_index, shard_index) / self._SYNC_RETRY

    # -- the run's files

    @property
    def dead_letter(self) -> StoragePath:
        return self.root / self.DEAD_LETTER

    @property
    def pending(self) -> StoragePath:
        return self.root / self.PENDING

    @property
    def rejected(self) -> StoragePath:
        """The records the build set aside (``on_invalid_record="skip"``), with their rule and location."""
        return self.root / self.REJECTED

    @property
    def manifest(self) -> StoragePath:
        return self.root / self.MANIFEST

    @property
    def report(self) -> StoragePath:
        return self.root / self.REPORT

    @property
    def cancel_record(self) -> StoragePath:
        """``cancel.json``: present when the run was canceled on purpose (no create, round or retry after)."""
        return self.root / self._CANCEL_RECORD

    @property
    def estimate(self) -> StoragePath:
        return self.root / self._ESTIMATE

    @property
    def input_fingerprint(self) -> StoragePath:
        """``input.json``: what the build read (``core/build/input_fingerprint.py``)."""
        return self.root / self._INPUT_FINGERPRINT

    @property
    def answered_earlier(self) -> StoragePath:
        """``answered-earlier.json``: the records earlier runs of the interval answered (``add_new``)."""
        return self.root / self._ANSWERED_EARLIER

    @property
    def passthrough(self) -> StoragePath:
        """``passthrough.jsonl``: the input fields carried into every outcome row."""
        return self.root / self._PASSTHROUGH

    @property
    def reused(self) -> StoragePath:
        """``reused.jsonl``: the run's ``succeeded`` rows answered from the answer store (``core/reuse``)."""
        return self.root / self._REUSED
