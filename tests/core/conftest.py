"""Fixtures shared by the core's test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.run.layout import RunFolder


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    """An empty run folder of pipeline ``claude_batch`` in DAG run ``run_1`` under ``tmp_path``."""
    return RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
