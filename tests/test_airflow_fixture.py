from __future__ import annotations

from pathlib import Path

import pytest

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG, task

with DAG("fixture_smoke", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    @task
    def numbers():
        return [1, 2, 3]

    @task
    def double(x):
        return x * 2

    double.expand(x=numbers())
"""


@pytest.mark.airflow
def test_run_dag_runs_a_mapped_dag_for_real(run_dag, tmp_path: Path) -> None:
    dag_file = tmp_path / "fixture_smoke.py"
    dag_file.write_text(DAG_SOURCE)
    dag_run = run_dag(dag_file, "fixture_smoke")
    assert dag_run.state == "success"
