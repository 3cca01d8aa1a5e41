"""The FastAPI app Airflow's API server mounts at ``/claude-batches``: the page and its JSON list.

Both answer only a signed-in user (Airflow's JWT, from the UI's cookie or an ``Authorization: Bearer``
header, checked by Airflow's own ``get_user``) and list only the DAGs the auth manager lets that user
read (``get_authorized_dag_ids``): a DAG the user may not see is never named, counted or charted.

- ``GET /claude-batches/`` the page (HTML, inline SVG, no CDN);
- ``GET /claude-batches/api/runs`` the same list as JSON, paginated (``limit``, ``offset``,
  ``total_entries``), filtered by ``dag_id``, ``run_id``, ``since``, ``until`` (UTC dates or times on
  the DAG run's ``run_after``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from airflow_claude_batch.compat import plugin_user_dependency, readable_dag_ids
from airflow_claude_batch.ui.page import render_page
from airflow_claude_batch.ui.plugin import URL_PREFIX
from airflow_claude_batch.ui.run_records import RunFilter, dags_with_runs, list_report_records
from airflow_claude_batch.ui.run_rows import rows_for

#: Runs per page: the page's default and the most one request may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

User = Annotated[Any, Depends(plugin_user_dependency())]


def create_app() -> FastAPI:
    """The app the plugin hands to Airflow's API server."""
    app = FastAPI(
        title="Claude batches",
        description="Pipeline runs of Claude Message Batches: outcomes and money, per run and night.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_api_route("/", page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/api/runs", runs, methods=["GET"])
    return app


@dataclass(frozen=True)
class RunsQuery:
    """What the JSON list and the page are asked for: filters and one page of the list.

    :param dag_id: only this DAG.
    :param run_id: only this DAG run.
    :param since: runs due at or after this UTC date or time.
    :param until: runs due before this UTC date or time.
    :param limit: runs per page (at most 1,000).
    :param offset: runs skipped before the page.
    """

    dag_id: str | None
    run_id: str | None
    since: str | None
    until: str | None
    limit: int
    offset: int


def runs_query(
    dag_id: str | None = None,
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunsQuery:
    """The query string's parameters, declared once for both routes (see :class:`RunsQuery`)."""
    return RunsQuery(dag_id, run_id, since, until, limit, offset)


Asked = Annotated[RunsQuery, Depends(runs_query)]


def runs(request: Request, user: User, asked: Asked) -> dict[str, Any]:
    """The pipeline runs the user may see, newest first, one page of them.

    :param request: the request (for Airflow's UI root in the DAG run links).
    :param user: the signed-in user.
    :param asked: the filters and the page.
    """
    listed, total, _dags = _list(user, asked, with_dags=False)
    root = ui_root(request)
    return {
        "runs": [row.to_dict(root) for row in listed],
        "total_entries": total,
        "limit": asked.limit,
        "offset": asked.offset,
    }


def page(request: Request, user: User, asked: Asked) -> HTMLResponse:
    """The page: filters, charts and the table (the same list as :func:`runs`)."""
    listed, total, dags = _list(user, asked, with_dags=True)
    root = ui_root(request)
    filters = {
        "dag_id": asked.dag_id or "",
        "run_id": asked.run_id or "",
        "since": asked.since or "",
        "until": asked.until or "",
    }
    html = render_page(
        [row.to_dict(root) for row in listed],
        total=total,
        filters=filters,
        dag_ids=dags,
        limit=asked.limit,
        offset=asked.offset,
    )
    return HTMLResponse(html)


def ui_root(request: Request) -> str:
    """Airflow's UI root path: where the API server mounted this app, less its own prefix."""
    root_path = str(request.scope.get("root_path") or "")
    return root_path[: -len(URL_PREFIX)] if root_path.endswith(URL_PREFIX) else root_path


def _list(user: Any, asked: RunsQuery, *, with_dags: bool) -> tuple[list[Any], int, list[str]]:
    from airflow.utils.session import create_session

    run_filter = RunFilter(
        dag_ids=readable_dag_ids(user),
        dag_id=asked.dag_id or None,
        run_id=asked.run_id or None,
        since=parse_moment(asked.since, "since"),
        until=parse_moment(asked.until, "until"),
    )
    with create_session() as session:
        records, total = list_report_records(session, run_filter, limit=asked.limit, offset=asked.offset)
        dags = dags_with_runs(session, run_filter.dag_ids) if with_dags else []
    return rows_for(records), total, dags


def parse_moment(text: str | None, name: str) -> datetime | None:
    """A filter's moment: an ISO date (midnight UTC) or date and time (UTC when it names no zone).

    :param text: what the request gave.
    :param name: the parameter's name, for the error.
    """
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(
            status_code=400, detail=f"{name}: {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time"
        ) from None
    if len(text.strip()) == 10:
        moment = datetime.combine(moment.date(), time(0))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
