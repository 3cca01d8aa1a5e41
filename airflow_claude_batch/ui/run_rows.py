"""Airflow's records of pipeline runs → the page's rows, each run's manifest read once.

Where a run's manifest is: its run folder, ``{storage}/{dag_id}/{run_id}/{pipeline_id}/``, from the
report task's rendered ``storage`` and ``storage_conn_id`` (the connection Airflow already has) and the
pipeline id its result names (else its task group's id). The manifest is read through the core's
report stage (:mod:`~airflow_claude_batch.core.report.run_summary`) and kept by location and version
(the report task's end and try), so a list of a thousand runs reads storage only for runs it has not
seen. A run whose manifest cannot be read (Airflow no longer keeps its rendered fields, or the storage
does not answer) is shown from what its report task returned, and says so.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_claude_batch import DEFAULT_PIPELINE_ID
from airflow_claude_batch.core.report import (
    UNKNOWN,
    RunSummary,
    SummaryCache,
    summary_from_manifest,
    summary_from_report_result,
)
from airflow_claude_batch.core.run import RunFolder, read_json, readable_uri
from airflow_claude_batch.links import report_link_url
from airflow_claude_batch.ui.run_records import ReportRecord

log = logging.getLogger(__name__)

#: Manifests read at once when a page holds runs not seen before (object stores answer in parallel).
READ_THREADS = 8
#: The summaries every request of this API server shares.
CACHE = SummaryCache()


@dataclass(frozen=True)
class RunRow:
    """One pipeline run on the page and in the JSON list.

    :param record: what Airflow recorded.
    :param pipeline_id: the pipeline (the report task's group id).
    :param summary: its outcomes and money.
    :param manifest_uri: its manifest, as people read it (``None``: unknown).
    :param note: why the figures are missing or come from the report's result, else ``None``.
    """

    record: ReportRecord
    pipeline_id: str
    summary: RunSummary
    manifest_uri: str | None
    note: str | None = None

    @property
    def night(self) -> str:
        """The UTC date the run was due (its night)."""
        when = self.record.run_after
        return when.strftime("%Y-%m-%d") if when is not None else "unknown"

    def to_dict(self, ui_root: str) -> dict[str, Any]:
        """The row as the JSON list gives it.

        :param ui_root: Airflow's UI root path (``""`` at the host's root), for the DAG run's link.
        """
        record = self.record
        report_uri = self.summary.report_uri
        return {
            "dag_id": record.dag_id,
            "pipeline_id": self.pipeline_id,
            "run_id": record.run_id,
            "task_id": record.task_id,
            "state": record.state,
            "dag_run_state": record.dag_run_state,
            "run_after": None if record.run_after is None else record.run_after.isoformat(),
            "night": self.night,
            **self.summary.to_dict(),
            "manifest_uri": self.manifest_uri,
            "report_url": None if report_uri is None else report_link_url(report_uri),
            "dag_run_url": dag_run_url(ui_root, record.dag_id, record.run_id),
            "note": self.note,
        }


def dag_run_url(ui_root: str, dag_id: str, run_id: str) -> str:
    """The DAG run's page in Airflow's UI.

    :param ui_root: Airflow's UI root path.
    :param dag_id: the DAG.
    :param run_id: the DAG run.
    """
    return f"{ui_root.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def rows_for(records: list[ReportRecord], cache: SummaryCache | None = None) -> list[RunRow]:
    """The rows of ``records``, in their order; manifests not seen before read in parallel first.

    :param records: the page's records.
    :param cache: where summaries are kept between requests (default: :data:`CACHE`).
    """
    cache = CACHE if cache is None else cache
    unseen = [r for r in records if (key := _cache_key(r)) is not None and key not in cache]
    read: dict[int, RunRow] = {}
    if len(unseen) > 1:
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="claude-batches") as pool:
            rows = pool.map(lambda record: row_for(record, cache), unseen)
            # Kept by record, so a manifest that could not be read is not asked for twice.
            read = {id(record): row for record, row in zip(unseen, rows, strict=True)}
    return [read.get(id(record)) or row_for(record, cache) for record in records]


def row_for(record: ReportRecord, cache: SummaryCache) -> RunRow:
    """One run's row: from its manifest when it can be read, else from its report task's result.

    :param record: what Airflow recorded of the run.
    :param cache: where summaries are kept between requests.
    """
    pipeline_id = _pipeline_id(record)
    key = _cache_key(record)
    if key is not None:
        shown = _manifest_uri(record, pipeline_id)
        try:
            summary = cache.get(key, lambda: _read_summary(record, pipeline_id))
        except Exception as exc:  # the storage did not answer: the row says so, the page still lists
            log.warning("could not read %s: %s", shown, exc)
            summary, note = _from_result(record, f"manifest not read: {type(exc).__name__}")
            return RunRow(record, pipeline_id, summary, shown, note)
        if summary is not None:
            return RunRow(record, pipeline_id, summary, shown)
        summary, note = _from_result(record, "no manifest written (yet)")
        return RunRow(record, pipeline_id, summary, shown, note)
    summary, note = _from_result(record, "the run folder is unknown (Airflow no longer keeps its fields)")
    files = (record.result or {}).get("files") or {}
    return RunRow(record, pipeline_id, summary, files.get("manifest"), note)


def _read_summary(record: ReportRecord, pipeline_id: str) -> RunSummary | None:
    manifest = _manifest_path(record, pipeline_id)
    if manifest is None:
        return None
    data = read_json(manifest)
    if not isinstance(data, dict):
        return None
    return summary_from_manifest(data, report_uri=readable_uri(manifest.parent / RunFolder.REPORT))


def _from_result(record: ReportRecord, why: str) -> tuple[RunSummary, str]:
    if record.result is not None:
        return summary_from_report_result(record.result), f"{why}; figures from the report task's result"
    return UNKNOWN, why


def _pipeline_id(record: ReportRecord) -> str:
    run_uri = (record.result or {}).get("run_uri")
    if isinstance(run_uri, str) and run_uri.rstrip("/"):
        return run_uri.rstrip("/").rsplit("/", 1)[-1]
    group, _, _task = record.task_id.rpartition(".")
    return group or DEFAULT_PIPELINE_ID


def _conn_id(record: ReportRecord) -> str | None:
    value = (record.rendered or {}).get("storage_conn_id")
    return value if isinstance(value, str) and value.strip() not in ("", "None") else None


def _manifest_path(record: ReportRecord, pipeline_id: str) -> Any | None:
    storage = _storage(record)
    if storage is None:
        return None
    from airflow.sdk import ObjectStoragePath

    try:
        root = ObjectStoragePath(storage, conn_id=_conn_id(record))
        return RunFolder.for_run(root, record.dag_id, record.run_id, pipeline_id).manifest
    except Exception as exc:  # a root the report itself refused: the row says why
        log.warning("no run folder for %s/%s: %s", record.dag_id, record.run_id, exc)
        return None


def _storage(record: ReportRecord) -> str | None:
    storage = (record.rendered or {}).get("storage")
    return storage.strip() if isinstance(storage, str) and storage.strip() else None


def _cache_key(record: ReportRecord) -> tuple[Any, ...] | None:
    """Where the run's manifest is and which version of it (made of text: no path object per row)."""
    storage = _storage(record)
    if storage is None:
        return None
    return (storage, _conn_id(record), record.dag_id, record.run_id, _pipeline_id(record), _version(record))


def _manifest_uri(record: ReportRecord, pipeline_id: str) -> str:
    storage = readable_uri(_storage(record) or "")
    return f"{storage.rstrip('/')}/{record.dag_id}/{record.run_id}/{pipeline_id}/{RunFolder.MANIFEST}"


def _version(record: ReportRecord) -> tuple[str | None, int, str | None]:
    # A manifest changes only when its report task runs again: a new try, a new end.
    ended = None if record.end_date is None else record.end_date.isoformat()
    return ended, record.try_number, record.state
