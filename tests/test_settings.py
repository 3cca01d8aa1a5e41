"""The provider's ``[claude_batch]`` configuration section: declared, listed by Airflow, env vars kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_claude_batch import get_provider_info, settings
from airflow_claude_batch.operators.task_inputs import load_prices


def test_the_section_is_declared_in_the_provider_info() -> None:
    options = get_provider_info()["config"]["claude_batch"]["options"]
    assert {
        "prices_file",
        "poll_interval",
        "batch_rpm_limit",
        "poll_rpm_share",
        "storage_conn_id",
        "source_conn_id",
    } <= set(options)
    assert options["poll_interval"]["default"] == "60"
    assert options["batch_rpm_limit"]["default"] == "50"
    assert options["poll_rpm_share"]["default"] == "0.5"


def test_airflow_config_list_shows_the_section() -> None:
    env = {**os.environ, "AIRFLOW__CLAUDE_BATCH__POLL_INTERVAL": "90"}
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "list", "--section", "claude_batch"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "[claude_batch]" in listed.stdout
    assert "prices_file" in listed.stdout
    value = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "get-value", "claude_batch", "poll_interval"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert value.stdout.strip() == "90"


def test_the_legacy_environment_variable_wins_over_the_configuration(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__POLL_INTERVAL", "90")
    assert settings.poll_interval() == 90.0
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "15")
    assert settings.poll_interval() == 15.0


def test_a_bad_poll_interval_says_where_it_came_from(monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "soon")
    with pytest.raises(ValueError, match=r"poll_interval .*'soon'"):
        settings.poll_interval()


def test_the_sensor_defaults_to_the_configured_poll_interval(monkeypatch) -> None:
    from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__POLL_INTERVAL", "42")
    sensor = ClaudeBatchSensor(task_id="wait", batch_id="msgbatch_x")
    assert sensor.poll_interval == 42.0
    assert sensor.poke_interval == 42.0


def test_the_configured_prices_file_is_laid_over_the_shipped_prices(monkeypatch, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"claude-test-model": {"input": 1.0, "output": 2.0}}}))
    monkeypatch.delenv("CLAUDE_BATCH_PRICES_FILE", raising=False)
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__PRICES_FILE", str(prices))
    assert "claude-test-model" in load_prices(None, None).models
    monkeypatch.delenv("AIRFLOW__CLAUDE_BATCH__PRICES_FILE")
    assert "claude-test-model" not in load_prices(None, None).models


def test_the_poll_budget_comes_from_the_section_and_its_environment_variables(monkeypatch) -> None:
    monkeypatch.delenv("CLAUDE_BATCH_BATCH_RPM_LIMIT", raising=False)
    monkeypatch.delenv("CLAUDE_BATCH_POLL_RPM_SHARE", raising=False)
    budget = settings.poll_budget()
    assert (budget.rpm_limit, budget.share) == (50.0, 0.5)
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__BATCH_RPM_LIMIT", "1000")
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__POLL_RPM_SHARE", "0.25")
    assert settings.poll_budget().calls_per_minute == 250.0
    monkeypatch.setenv("CLAUDE_BATCH_BATCH_RPM_LIMIT", "4000")
    assert settings.poll_budget().rpm_limit == 4000.0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CLAUDE_BATCH_BATCH_RPM_LIMIT", "lots", r"\(or CLAUDE_BATCH_BATCH_RPM_LIMIT\) is 'lots'"),
        ("CLAUDE_BATCH_POLL_RPM_SHARE", "1.5", r"poll_rpm_share must be above 0 and at most 1"),
        ("CLAUDE_BATCH_BATCH_RPM_LIMIT", "0", r"batch_rpm_limit must be a positive number"),
    ],
)
def test_a_bad_poll_budget_says_which_option(monkeypatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        settings.poll_budget()
