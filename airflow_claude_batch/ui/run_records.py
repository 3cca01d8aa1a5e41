"""The pipeline runs Airflow knows of: its report task instances, with what each returned.

Airflow's own records are the index: one report task instance per pipeline run (the task's class is
stored with it), its XCom ``return_value`` (the run's summary and folder) and its rendered template
fields (the storage root and the connection it was read with). One query gives a page of them, newest
first, only in the DAGs the caller may read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select

#: The report operator's class, as Airflow stores it with each task instance (``task_instance.operator``).
REPORT_OPERATOR = "ClaudeBatchReportOperator"
RETURN_VALUE_KEY = "return_value"


@dataclass(frozen=True)
class RunFilter:
    """Which runs a request asks for.

    :param dag_ids: the DAGs the caller may read (nothing outside them is ever listed).
    :param dag_id: only this DAG, when given.
    :param run_id: only this DAG run, when given.
    :param since: runs due at or after this moment (the DAG run's ``run_after``).
    :param until: runs due before this moment.
    """

    dag_ids: Collection[str]
    dag_id: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ReportRecord:
    """One pipeline run as Airflow recorded it.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the report task (its group's id names the pipeline).
    :param map_index: the report task's map index (-1: not mapped).
    :param state: the report task's state (``success``, ``failed``, ``skipped`` for a dry run, ...).
    :param dag_run_state: the DAG run's state.
    :param run_after: when the DAG run was due.
    :param end_date: when the report task last ended (``None``: not yet).
    :param try_number: the report task's try.
    :param result: what the report task returned (``None``: nothing, e.g. it failed or was skipped).
    :param rendered: its rendered template fields (``storage``, ``storage_conn_id``), when Airflow kept them.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    dag_run_state: str | None
    run_after: datetime | None
    end_date: datetime | None
    try_number: int
    result: Mapping[str, Any] | None
    rendered: Mapping[str, Any] | None


def list_report_records(
    session: Any, run_filter: RunFilter, *, limit: int, offset: int
) -> tuple[list[ReportRecord], int]:
    """One page of the pipeline runs ``run_filter`` asks for, newest first, and how many there are.

    :param session: a SQLAlchemy session on Airflow's metadata database.
    :param run_filter: the runs asked for (only in the readable DAGs).
    :param limit: runs in the page.
    :param offset: runs skipped before it.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.xcom import XComModel

    conditions = _conditions(run_filter, TI, DagRun)
    if conditions is None:
        return [], 0
    joined = select(TI).join(DagRun, and_(DagRun.dag_id == TI.dag_id, DagRun.run_id == TI.run_id))
    total = session.scalar(
        select(func.count()).select_from(joined.where(*conditions).subquery())  # one count, no rows
    )
    query = (
        select(
            TI.dag_id,
            TI.run_id,
            TI.task_id,
            TI.map_index,
            TI.state,
            DagRun.state,
            DagRun.run_after,
            TI.end_date,
            TI.try_number,
            XComModel.value,
            Rendered.rendered_fields,
        )
        .join(DagRun, and_(DagRun.dag_id == TI.dag_id, DagRun.run_id == TI.run_id))
        .outerjoin(
            XComModel,
            and_(
                XComModel.dag_run_id == DagRun.id,
                XComModel.task_id == TI.task_id,
                XComModel.map_index == TI.map_index,
                XComModel.key == RETURN_VALUE_KEY,
            ),
        )
        .outerjoin(
            Rendered,
            and_(
                Rendered.dag_id == TI.dag_id,
                Rendered.run_id == TI.run_id,
                Rendered.task_id == TI.task_id,
                Rendered.map_index == TI.map_index,
            ),
        )
        .where(*conditions)
        .order_by(DagRun.run_after.desc(), TI.dag_id, TI.run_id, TI.task_id, TI.map_index)
        .limit(limit)
        .offset(offset)
    )
    records = [_record(row, XComModel) for row in session.execute(query)]
    return records, int(total or 0)


def _conditions(run_filter: RunFilter, TI: Any, DagRun: Any) -> list[Any] | None:
    dag_ids = set(run_filter.dag_ids)
    if run_filter.dag_id is not None:
        dag_ids &= {run_filter.dag_id}
    if not dag_ids:
        return None  # the caller may read none of them: nothing to ask the database
    conditions = [TI.operator == REPORT_OPERATOR, TI.dag_id.in_(sorted(dag_ids))]
    if run_filter.run_id is not None:
        conditions.append(TI.run_id == run_filter.run_id)
    if run_filter.since is not None:
        conditions.append(DagRun.run_after >= run_filter.since)
    if run_filter.until is not None:
        conditions.append(DagRun.run_after < run_filter.until)
    return conditions


def _record(row: Any, XComModel: Any) -> ReportRecord:
    (dag_id, run_id, task_id, map_index, state, run_state, run_after, end_date, tries, value, rendered) = row
    result = None
    if value is not None:
        try:
            result = XComModel.deserialize_value(_Stored(value))
        except Exception:  # a value another XCom backend stores elsewhere: summarised from the manifest
            result = None
    return ReportRecord(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        state=None if state is None else str(state),
        dag_run_state=None if run_state is None else str(run_state),
        run_after=run_after,
        end_date=end_date,
        try_number=tries or 0,
        result=result if isinstance(result, Mapping) else None,
        rendered=rendered if isinstance(rendered, Mapping) else None,
    )


@dataclass(frozen=True)
class _Stored:
    """The shape ``XComModel.deserialize_value`` reads (a row with a ``value``)."""

    value: Any


def dags_with_runs(session: Any, dag_ids: Collection[str]) -> list[str]:
    """The DAGs among ``dag_ids`` that have pipeline runs (what the page's DAG filter offers).

    :param session: a SQLAlchemy session on Airflow's metadata database.
    :param dag_ids: the DAGs the caller may read.
    """
    from airflow.models.taskinstance import TaskInstance as TI

    if not dag_ids:
        return []
    query = (
        select(TI.dag_id)
        .where(TI.operator == REPORT_OPERATOR, TI.dag_id.in_(sorted(dag_ids)))
        .distinct()
        .order_by(TI.dag_id)
    )
    return list(session.scalars(query))
