"""Fixtures shared by the results stage's test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.run.layout import RunFolder


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
