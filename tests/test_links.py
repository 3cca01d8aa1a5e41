"""The extra links: "Claude batch" (which URL for which Base URL), "Claude batch report", declarations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_claude_batch import get_provider_info
from airflow_claude_batch.links import (
    ClaudeBatchesPageLink,
    ClaudeBatchLink,
    ClaudeBatchReportLink,
    batch_link_url,
    runs_page_url,
)
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor


def test_the_first_party_api_links_to_the_console(monkeypatch) -> None:
    monkeypatch.delenv("CLAUDE_BATCH_BATCH_LINK", raising=False)
    url = batch_link_url("https://api.anthropic.com", "msgbatch_01")
    assert url == "https://console.anthropic.com/workspaces/default/batches/msgbatch_01"


def test_a_gateway_or_the_emulator_gets_no_link_unless_configured(monkeypatch) -> None:
    monkeypatch.delenv("CLAUDE_BATCH_BATCH_LINK", raising=False)
    assert batch_link_url("http://127.0.0.1:8765", "msgbatch_01") is None
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__BATCH_LINK", "{base_url}/batches/{batch_id}")
    assert (
        batch_link_url("https://gw.example.com/", "msgbatch_01")
        == "https://gw.example.com/batches/msgbatch_01"
    )


def test_the_link_is_declared_and_on_the_submit_and_wait_tasks() -> None:
    assert get_provider_info()["extra-links"] == [
        "airflow_claude_batch.links.ClaudeBatchLink",
        "airflow_claude_batch.links.ClaudeBatchReportLink",
        "airflow_claude_batch.links.ClaudeBatchesPageLink",
    ]
    for operator in (ClaudeBatchSubmitOperator, ClaudeBatchSensor):
        assert [link.name for link in operator.operator_extra_links] == [ClaudeBatchLink.name]


class _RecordingTaskInstance:
    """Stands in for the task instance's XCom push (the context's ``ti``)."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def test_persist_always_stores_a_value_so_the_end_of_the_task_finds_one(monkeypatch) -> None:
    monkeypatch.delenv("CLAUDE_BATCH_BATCH_LINK", raising=False)
    for base_url, expected in (
        ("https://api.anthropic.com", "https://console.anthropic.com/workspaces/default/batches/msgbatch_01"),
        ("http://127.0.0.1:8765", ""),
    ):
        ti = _RecordingTaskInstance()
        ClaudeBatchLink.persist({"ti": ti}, base_url=base_url, batch_id="msgbatch_01")
        assert ti.pushed == {ClaudeBatchLink().xcom_key: expected}


@pytest.mark.parametrize(
    ("report_uri", "expected"),
    [
        (
            "s3://runs/nightly/run 1/report.html",
            "https://s3.console.aws.amazon.com/s3/object/runs?prefix=nightly/run%201/report.html",
        ),
        (
            "gs://runs/a/report.html",
            "https://console.cloud.google.com/storage/browser/_details/runs/a/report.html",
        ),
        ("file:///srv/runs/a/report.html", "file:///srv/runs/a/report.html"),
    ],
)
def test_the_report_task_links_to_its_report_page(report_uri: str, expected: str) -> None:
    class StandInTaskInstance:
        pushed: dict[str, str] = {}

        def xcom_push(self, key: str, value: str) -> None:
            self.pushed[key] = value

    ti = StandInTaskInstance()
    assert ClaudeBatchReportLink.persist({"ti": ti}, report_uri=report_uri) == expected
    assert ti.pushed == {ClaudeBatchReportLink().xcom_key: expected}
    assert [link.name for link in ClaudeBatchReportOperator.operator_extra_links] == [
        "Claude batch report",
        "Claude batches",
    ]


def test_the_report_task_links_to_its_run_on_the_claude_batches_page(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a/")
    key = SimpleNamespace(dag_id="nightly", run_id="scheduled__2026-03-01T00:00:00+00:00")

    assert ClaudeBatchesPageLink().get_link(None, ti_key=key) == (
        "https://airflow.example.com/team-a/claude-batches/"
        "?dag_id=nightly&run_id=scheduled__2026-03-01T00%3A00%3A00%2B00%3A00"
    )
    assert runs_page_url("d", "r", base_url="") == "/claude-batches/?dag_id=d&run_id=r"
