"""The "Claude batch" extra link of the submit and wait tasks, and the "Claude batch report" and
"Claude batches" links of the report task (its ``report.html``; its run on the package's page).

Airflow's UI shows a button per declared link; the API server reads the link's URL from the task's
XCom under :attr:`ClaudeBatchLink.xcom_key`, which the task writes once it knows its batch id
(:meth:`ClaudeBatchLink.persist`). Which URL:

- ``[claude_batch] batch_link`` (or ``CLAUDE_BATCH_BATCH_LINK``) when set: a template with
  ``{batch_id}`` and ``{base_url}``, for any connection (a gateway's own batch page, for example);
- otherwise, for the first-party API (an empty Base URL, or ``https://api.anthropic.com``): the
  batch in the Claude Console, :data:`CONSOLE_BATCH_URL`;
- otherwise (a gateway or the emulator): no link. The batch object the Base URL serves needs the API
  key in a header, which a link in a browser cannot send, so a link to it would only answer 401.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from airflow_claude_batch import settings
from airflow_claude_batch.core.run import masked_url

FIRST_PARTY_BASE_URL = "https://api.anthropic.com"
#: The Console page of one batch; the workspace segment "default" is the organisation's default workspace.
CONSOLE_BATCH_URL = "https://console.anthropic.com/workspaces/default/batches/{batch_id}"


def batch_link_url(base_url: str, batch_id: str) -> str | None:
    """The link for one batch reached through ``base_url``, or ``None`` when there is none.

    :param base_url: the connection's normalised Base URL.
    :param batch_id: the batch id.
    """
    template = settings.get_setting("batch_link")
    if template is None:
        if base_url.rstrip("/") != FIRST_PARTY_BASE_URL:
            return None
        template = CONSOLE_BATCH_URL
    # Credentials in a gateway's URL never reach the link (stored in XCom, shown in the UI).
    return template.format(batch_id=batch_id, base_url=masked_url(base_url.rstrip("/")))


class ClaudeBatchLink(BaseOperatorLink):
    """A link from a submit or wait task to its batch."""

    name: ClassVar[str] = "Claude batch"  # type: ignore[misc]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """Return the URL the task stored (Airflow's API server reads the XCom itself)."""
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, *, base_url: str, batch_id: str) -> str | None:
        """Store the batch's URL for the UI (an empty one when it has none); return it.

        An empty value is stored too: when the task ends, Airflow reads every extra link through
        :meth:`get_link` and stores what it returns, and a missing value is logged as an error ("XCom
        not found") in the task's log, once per task, for every run on a gateway or the emulator.

        :param context: the task's context.
        :param base_url: the connection's normalised Base URL.
        :param batch_id: the batch id.
        """
        url = batch_link_url(base_url, batch_id)
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key=cls().xcom_key, value=url or "")
        return url


#: Where a browser opens an object of a cloud storage: its console page (the bucket, then the key).
CONSOLE_OBJECT_URLS = {
    "s3": "https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}",
    "gs": "https://console.cloud.google.com/storage/browser/_details/{bucket}/{key}",
    "gcs": "https://console.cloud.google.com/storage/browser/_details/{bucket}/{key}",
}


def report_link_url(report_uri: str) -> str:
    """The link to a run's ``report.html``: its object's console page on S3 or GCS, else the URI itself
    (a ``file://`` URI opens in a browser on the machine that holds it).

    :param report_uri: the report's URI as people read it (no connection id, no credentials).
    """
    parts = urlsplit(report_uri)
    template = CONSOLE_OBJECT_URLS.get(parts.scheme)
    if template is None:
        return report_uri
    return template.format(bucket=parts.netloc, key=quote(parts.path.lstrip("/")))


class ClaudeBatchReportLink(BaseOperatorLink):
    """A link from a report task to the run's report page (``report.html``)."""

    name: ClassVar[str] = "Claude batch report"  # type: ignore[misc]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """Return the URL the task stored (Airflow's API server reads the XCom itself)."""
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, *, report_uri: str | None) -> str:
        """Store the report page's URL for the UI (an empty one when there is none); return it."""
        url = report_link_url(report_uri) if report_uri else ""
        ti = context.get("ti") if hasattr(context, "get") else None
        if ti is not None:
            ti.xcom_push(key=cls().xcom_key, value=url)
        return url


#: The "Claude batches" page's path below Airflow's base URL (``ui/plugin.py`` mounts it there).
RUNS_PAGE_PATH = "/claude-batches/"


def runs_page_url(dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """The "Claude batches" page opened on one DAG run's pipeline runs.

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param base_url: Airflow's ``[api] base_url`` (default: read from the configuration; empty: a
        link relative to the API server's host).
    """
    from urllib.parse import urlencode

    if base_url is None:
        from airflow_claude_batch.compat import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    query = urlencode({"dag_id": dag_id, "run_id": run_id})
    return f"{base_url.rstrip('/')}{RUNS_PAGE_PATH}?{query}"


class ClaudeBatchesPageLink(BaseOperatorLink):
    """A link from a report task to its run on the "Claude batches" page (the package's Airflow plugin)."""

    name: ClassVar[str] = "Claude batches"  # type: ignore[misc]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """Return the page's URL for the task's DAG run (made from the task's key: nothing to store)."""
        return runs_page_url(ti_key.dag_id, ti_key.run_id)
