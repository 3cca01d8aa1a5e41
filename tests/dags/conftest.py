"""Fixtures of the sample DAGs' tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures.airflow import DAGS_FOLDER

SAMPLE_DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def dags_folder() -> Path:
    """The sample DAGs with their prompts and data, in the test Airflow's DAG folder."""
    shutil.copytree(
        SAMPLE_DAGS, DAGS_FOLDER, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    return DAGS_FOLDER
