"""Parsing a DAG file that calls the pipeline loads nothing heavy beyond what Airflow itself loads.

Compared as module sets in a fresh interpreter (timing is measured by ``python -m bench dag_import``,
never asserted here): the SDK, pyarrow, jsonschema and pydantic are imported where they are used, in a
task, not when the DAG processor imports ``airflow_claude_batch.pipeline``.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("anthropic", "pydantic", "pyarrow", "jsonschema", "httpx", "tenacity", "fastapi", "aiohttp")

_CHILD = """
import json, sys
top = lambda names: {name.partition(".")[0] for name in names}
import airflow.sdk
airflow_alone = top(sys.modules)
import airflow_claude_batch.pipeline
print(json.dumps({"airflow": sorted(airflow_alone), "added": sorted(top(sys.modules) - airflow_alone)}))
"""


def test_importing_the_pipeline_adds_no_heavy_package_to_airflow_s_own_import() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    added = set(loaded["added"])
    assert "anthropic" not in added, "the SDK is imported at parse time: import it inside the function"
    assert sorted(added & set(HEAVY)) == [], f"{sorted(added & set(HEAVY))} imported at parse time"
