"""Test set-up shared by every test: an isolated Airflow home on SQLite, and the emulator fixtures.

Airflow reads its configuration at import, so the environment is set here, before any test module
imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="acb-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_AIRFLOW_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP"] = "airflow_claude_batch\\..*"
# The emulator has no rate limit unless a test sets one: the triggerer's poller may list as often as
# the tests' short poll intervals ask (tests of the budget itself set their own).
os.environ["CLAUDE_BATCH_BATCH_RPM_LIMIT"] = "600000"
(_AIRFLOW_HOME / "dags").mkdir()

pytest_plugins = ["tests.fixtures.emulator", "tests.fixtures.airflow", "tests.fixtures.s3"]
