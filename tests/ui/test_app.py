"""The "Claude batches" page and its JSON list, asked of Airflow's own API server as a user would.

Real pipeline runs (``dag.test()`` against the emulator) write real report task instances, XComs and
manifests; the API server is Airflow's (``create_app``), with the plugin loaded from the package's
entry point and an auth manager that lets one user read only one DAG.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_claude_batch.ui import run_rows
from tests.fixtures.airflow import DAGS_FOLDER
from tests.fixtures.emulator import DEFAULT_CONN_ENV
from tests.test_pipeline import write_run_dag

pytestmark = pytest.mark.airflow

RUNS = "/claude-batches/api/runs"
#: (dag id, records, logical date) of the recorded runs: two nights of one DAG, one of another.
RECORDED = [
    ("ui_alpha", 12, datetime(2026, 3, 1, tzinfo=timezone.utc)),
    ("ui_alpha", 12, datetime(2026, 3, 2, tzinfo=timezone.utc)),
    ("ui_beta", 8, datetime(2026, 3, 2, tzinfo=timezone.utc)),
]


def _run(dag_file: Path, dag_id: str, logical_date: datetime) -> Any:
    target = DAGS_FOLDER / dag_file.name
    shutil.copy(dag_file, target)
    spec = importlib.util.spec_from_file_location(f"_dagfile_{target.stem}", target)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag.test(logical_date=logical_date, run_after=logical_date)


@pytest.fixture(scope="module")
def recorded(
    airflow_db: None, _emulator_handle: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Three finished pipeline runs in two DAGs; their manifests by (dag id, run id)."""
    manifests = {}
    with pytest.MonkeyPatch.context() as patch:
        _emulator_handle.reset()
        patch.setenv(DEFAULT_CONN_ENV, _emulator_handle.connection_json)
        for dag_id, records, logical_date in RECORDED:
            folder = tmp_path_factory.mktemp(dag_id)
            dag_file, storage = write_run_dag(folder, dag_id, records)
            dag_run = _run(dag_file, dag_id, logical_date)
            assert dag_run.state == "success"
            path = storage / dag_id / dag_run.run_id / "claude_batch" / "manifest.json"
            manifests[(dag_id, dag_run.run_id)] = json.loads(path.read_text())
    return manifests


@pytest.fixture
def api(recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's API server app (core routes and plugins) with the per-DAG auth manager."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.ui.per_dag_auth.PerDagAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,alpha_reader:viewer")
    monkeypatch.setattr(run_rows, "CACHE", run_rows.SummaryCache())
    purge_cached_app()
    app = create_app(apps="core")
    with TestClient(app) as client:
        yield client
    purge_cached_app()


def token_for(username: str, role: str) -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))
    return {"Authorization": f"Bearer {token}"}


def test_the_plugin_is_listed_and_mounted_by_the_api_server(api: Any) -> None:
    from airflow.plugins_manager import get_plugin_info

    plugins = {info["name"]: info for info in get_plugin_info()}
    assert plugins["claude_batches"]["fastapi_apps"][0]["url_prefix"] == "/claude-batches"
    assert plugins["claude_batches"]["external_views"][0]["url_route"] == "claude-batches"
    assert api.get(RUNS, headers=token_for("admin", "admin")).status_code == 200


def test_an_anonymous_request_is_refused(api: Any) -> None:
    assert api.get(RUNS).status_code == 401
    assert api.get("/claude-batches/").status_code == 401
    assert api.get(RUNS, headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)


def test_every_run_with_its_outcomes_and_money_from_its_manifest(api: Any, recorded: dict[str, Any]) -> None:
    answer = api.get(RUNS, headers=token_for("admin", "admin")).json()

    assert answer["total_entries"] == 3
    rows = {(row["dag_id"], row["run_id"]): row for row in answer["runs"]}
    assert set(rows) == set(recorded)
    for key, manifest in recorded.items():
        row = rows[key]
        assert row["source"] == "manifest", row["note"]
        assert row["pipeline_id"] == "claude_batch"
        assert row["state"] == "success"
        assert row["records"] == manifest["input_records"]
        assert row["outcomes"] == manifest["dispositions"]
        assert row["batches"] == len(manifest["batch_ids"])
        assert row["actual_usd"] == pytest.approx(manifest["money"]["actual_usd"])
        money = manifest["money"]
        assert row["synchronous_equivalent_usd"] == pytest.approx(money["synchronous_equivalent_usd"])
        assert row["savings_usd"] == pytest.approx(manifest["money"]["savings_usd"])
        assert row["estimated_usd"] == pytest.approx(manifest["money"]["estimated_expected_usd"])
        assert row["report_url"].endswith(f"/{key[0]}/{key[1]}/claude_batch/report.html")
        assert row["dag_run_url"] == f"/dags/{key[0]}/runs/{quote(key[1], safe='')}"
    nights = [row["night"] for row in answer["runs"]]
    assert nights == sorted(nights, reverse=True)  # newest first


def test_pages_split_the_list_without_overlap(api: Any) -> None:
    headers = token_for("admin", "admin")
    pages = [api.get(RUNS, params={"limit": 2, "offset": at}, headers=headers).json() for at in (0, 2)]

    assert [len(page["runs"]) for page in pages] == [2, 1]
    assert {page["total_entries"] for page in pages} == {3}
    seen = [(row["dag_id"], row["run_id"]) for page in pages for row in page["runs"]]
    assert len(set(seen)) == 3
    assert api.get(RUNS, params={"limit": 0}, headers=headers).status_code == 422
    assert api.get(RUNS, params={"limit": 1001}, headers=headers).status_code == 422


def test_a_user_sees_nothing_of_a_dag_they_may_not_read(api: Any) -> None:
    headers = token_for("alpha_reader", "viewer")

    answer = api.get(RUNS, headers=headers).json()
    asked_for_beta = api.get(RUNS, params={"dag_id": "ui_beta"}, headers=headers).json()
    page = api.get("/claude-batches/", headers=headers).text

    assert {row["dag_id"] for row in answer["runs"]} == {"ui_alpha"}
    assert answer["total_entries"] == 2
    assert asked_for_beta == {"runs": [], "total_entries": 0, "limit": 100, "offset": 0}
    assert "ui_alpha" in page
    assert "ui_beta" not in page


def test_filters_by_dag_and_time(api: Any) -> None:
    headers = token_for("admin", "admin")

    beta = api.get(RUNS, params={"dag_id": "ui_beta"}, headers=headers).json()
    second_night = api.get(RUNS, params={"since": "2026-03-02"}, headers=headers).json()
    first_night = api.get(RUNS, params={"until": "2026-03-02"}, headers=headers).json()

    assert [row["dag_id"] for row in beta["runs"]] == ["ui_beta"]
    assert sorted(row["dag_id"] for row in second_night["runs"]) == ["ui_alpha", "ui_beta"]
    assert [(row["dag_id"], row["night"]) for row in first_night["runs"]] == [("ui_alpha", "2026-03-01")]
    assert api.get(RUNS, params={"since": "last week"}, headers=headers).status_code == 400


def test_manifests_are_read_once_then_kept(api: Any) -> None:
    headers = token_for("admin", "admin")
    api.get(RUNS, headers=headers)
    reads = run_rows.CACHE.reads

    api.get(RUNS, headers=headers)
    api.get("/claude-batches/", headers=headers)

    assert reads == 3
    assert run_rows.CACHE.reads == reads


def test_the_page_shows_the_table_the_charts_and_the_links(api: Any, recorded: dict[str, Any]) -> None:
    run_id = next(iter(recorded))[1]
    page = api.get("/claude-batches/", params={"run_id": run_id}, headers=token_for("admin", "admin"))

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.count("<svg") == 2
    assert 'aria-label="cost and savings per night"' in html
    assert "report.html" in html
    assert 'target="_top">DAG run</a>' in html
    assert 'class="focus"' in html
    assert "<script src" not in html  # nothing fetched from elsewhere
    assert "<link" not in html


def test_a_storage_that_does_not_answer_gives_the_report_task_figures_and_says_so(
    api: Any, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def refuse(path: Any) -> Any:
        asked.append(str(path))
        raise PermissionError(f"access denied to {path}")

    monkeypatch.setattr(run_rows, "read_json", refuse)
    answer = api.get(RUNS, headers=token_for("admin", "admin")).json()

    assert answer["total_entries"] == 3
    for row in answer["runs"]:
        manifest = recorded[(row["dag_id"], row["run_id"])]
        assert row["source"] == "report result"
        assert "manifest not read: PermissionError" in row["note"]
        assert row["outcomes"] == manifest["dispositions"]
        assert row["actual_usd"] == pytest.approx(manifest["money"]["actual_usd"])
        assert row["report_url"].endswith("/claude_batch/report.html")
    assert len(asked) == len(set(asked)) == 3  # each manifest asked for once, not once per pass
    assert len(run_rows.CACHE) == 0  # nothing kept: the next request reads again
