"""Which run folder a task writes: ``{storage}/{dag_id}/{run_id}/{pipeline_id}/``.

The pipeline id is the id of the pipeline's task group, so several pipelines of one DAG never share a
shard, a state file, a manifest or an output. Operators used on their own take ``pipeline_id`` or
inherit the id of the task group they are in.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_claude_batch import DEFAULT_PIPELINE_ID
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import InputError


def pipeline_id_of(task: Any, explicit: str | None) -> str:
    """Return ``explicit``, else the id of the task group holding ``task``, else the default id."""
    if explicit:
        return explicit
    group = getattr(task, "task_group", None)
    group_id = getattr(group, "group_id", None)
    return group_id or DEFAULT_PIPELINE_ID


def run_folder_for(context: Any, storage: Any, storage_conn_id: str | None, pipeline_id: str) -> RunFolder:
    """Return the run folder of this DAG run's pipeline ``pipeline_id`` under the ``storage`` root URI."""
    if not isinstance(storage, str) or not storage.strip():
        raise InputError(f"storage must be the root URI of run folders, got {storage!r}")
    root = ObjectStoragePath(storage.strip(), conn_id=storage_conn_id)
    return RunFolder.for_run(root, context["ti"].dag_id, context["run_id"], pipeline_id)
