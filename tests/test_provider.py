from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files

import jsonschema

from airflow_claude_batch import get_provider_info


def test_provider_info_is_valid_for_airflow() -> None:
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_module_the_provider_declares_exists() -> None:
    info = get_provider_info()
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for e in info[key]
        for m in e["python-modules"]
    ]
    for module in modules:
        __import__(module)


def test_airflow_lists_the_provider_and_its_connection_type() -> None:
    env = os.environ.copy()
    providers = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "airflow-claude-batch" in providers.stdout
    hooks = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    entries = {row["connection_type"]: row for row in json.loads(hooks.stdout)}
    assert entries["claude-batch"]["class"] == "airflow_claude_batch.hooks.claude.ClaudeBatchHook"
