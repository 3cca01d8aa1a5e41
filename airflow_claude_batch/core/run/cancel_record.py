"""A run canceled on purpose: the run-level record ``cancel.json`` that every spending step reads.

``python -m airflow_claude_batch.cancel`` writes this record (whole or not at all) in each pipeline's
run folder *before* it cancels any batch. From then on nothing of that run spends money again: the
submit creates no batch (a shard waiting for capacity ends without creating, and a create that lands
while the record is written is cancelled by its own submit), the requeue builds no next round and
sends no synchronous retry, and the report lists what was left with the reason ``canceled``.

Resuming a canceled run is a decision too: ``python -m airflow_claude_batch.cancel --resume`` removes
the record, then the tasks are cleared (see ``docs/operations.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import read_json, write_json
from airflow_claude_batch.exceptions import StorageError

CANCEL_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CancelRecord:
    """The run was canceled on purpose.

    :param canceled_at: when the cancel command wrote the record (UTC, ISO 8601).
    :param by: what wrote it (the command).
    """

    canceled_at: str
    by: str = "python -m airflow_claude_batch.cancel"
    schema_version: int = CANCEL_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_cancel(folder: RunFolder) -> CancelRecord | None:
    """Return the run's cancel record, or ``None`` when the run was not canceled.

    :raises StorageError: the record exists but cannot be read (never taken as "not canceled").
    """
    data = read_json(folder.cancel_record)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("canceled_at"), str):
        raise StorageError(
            f"{folder.cancel_record} is not a cancel record; remove it with "
            "`python -m airflow_claude_batch.cancel --resume` or write it again with the cancel command"
        )
    return CancelRecord(str(data["canceled_at"]), str(data.get("by") or CancelRecord.by))


def is_canceled(folder: RunFolder) -> bool:
    """Whether the run was canceled on purpose (its ``cancel.json`` exists)."""
    return read_cancel(folder) is not None


def write_cancel(folder: RunFolder, now: datetime | None = None) -> CancelRecord:
    """Write the run's cancel record (whole or not at all); an existing one is kept as it was."""
    existing = read_cancel(folder)
    if existing is not None:
        return existing
    moment = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    record = CancelRecord(moment)
    write_json(folder.cancel_record, record.to_dict())
    return record


def remove_cancel(folder: RunFolder) -> bool:
    """Remove the run's cancel record (a resume on purpose); return whether there was one."""
    path = folder.cancel_record
    if not path.exists():
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc}; check the storage's permissions") from exc
    return True
