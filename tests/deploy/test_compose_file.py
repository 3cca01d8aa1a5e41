"""docker-compose.yaml, its check override, .env.example and the Dockerfile, read as files.

These run without Docker: they keep the compose file starting in order (health checks and
``depends_on`` conditions), free of committed secrets, and in step with .env.example, the Dockerfile
and the override ``make compose-check`` uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
CHECK_OVERRIDE = REPO / "deploy" / "compose" / "compose.check.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"

LONG_RUNNING = {
    "postgres",
    "redis",
    "s3",
    "emulator",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}; not $${NAME}, which the container expands
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.add(match.group(1))
    return names


def test_every_service_of_the_topology_is_there(services: dict[str, Any]) -> None:
    assert set(services) == LONG_RUNNING | {"airflow-init"}


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_have_a_health_check(services: dict[str, Any], name: str) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert len(test) > 1


@pytest.mark.parametrize("name", sorted(AIRFLOW_SERVICES))
def test_airflow_services_start_after_the_database_broker_and_init(
    services: dict[str, Any], name: str
) -> None:
    depends = services[name]["depends_on"]
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert depends["airflow-init"] == {"condition": "service_completed_successfully"}


def test_init_waits_for_its_own_dependencies_and_runs_once(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    assert init["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "s3": {"condition": "service_healthy"},
    }
    assert init["restart"] == "no"


def test_workers_wait_for_the_api_server_they_report_to(services: dict[str, Any]) -> None:
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}


def test_the_dags_are_mounted_read_only(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        assert "./dags:/opt/airflow/dags:ro" in services[name]["volumes"]


def test_sensors_defer_and_logs_need_no_log_server(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "True"
    assert "--skip-serve-logs" in services["airflow-worker"]["command"]
    assert "--skip-serve-logs" in services["airflow-triggerer"]["command"]


def test_only_the_ui_is_published_and_only_on_loopback(services: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert list(published) == ["airflow-apiserver"]
    assert all(port.startswith("127.0.0.1:") for port in published["airflow-apiserver"])


def test_no_secret_is_written_in_the_compose_file(services: dict[str, Any]) -> None:
    secret_words = ("PASSWORD", "SECRET", "FERNET", "API_KEY", "SQL_ALCHEMY_CONN", "BROKER_URL", "BACKEND")
    for name, service in services.items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in secret_words) and not key.endswith("_FILE"):
                assert "${" in str(value), f"{name}: {key} must come from .env, not be written in the file"
    text = COMPOSE.read_text()
    assert "sk-ant-" not in text


def test_required_variables_are_named_in_env_example() -> None:
    text = COMPOSE.read_text()
    required = {match["name"] for match in VARIABLE.finditer(text) if match["op"] in (None, ":?", "?")}
    # Set by the check script only, never by users.
    required -= {"BASE_IMAGE"}
    assert required, "the compose file must take its secrets from variables"
    missing = required - env_example_names()
    assert not missing, f"variables the compose file needs but .env.example does not name: {sorted(missing)}"


def test_env_example_commits_no_secret_value() -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and re.search("PASSWORD|SECRET|FERNET|KEY", match.group(1)):
            assert match.group(2) == "", f"{match.group(1)} must be empty in .env.example"


def test_the_check_override_moves_every_service_to_loopback(services: dict[str, Any]) -> None:
    override = yaml.safe_load(CHECK_OVERRIDE.read_text())["services"]
    assert set(override) == set(services)
    host_names = {entry.split(":")[0] for entry in override["postgres"]["extra_hosts"]}
    for name, service in override.items():
        assert service["network_mode"] == "host", name
        assert {entry.split(":")[1] for entry in service["extra_hosts"]} == {"127.0.0.1"}, name
    # Every service name another service connects to resolves to loopback in the check.
    assert {"postgres", "redis", "s3", "emulator", "airflow-apiserver"} <= host_names


def test_bind_address_and_ports_are_variables_where_services_listen() -> None:
    text = COMPOSE.read_text()
    for variable in (
        "BIND_ADDRESS",
        "POSTGRES_PORT",
        "REDIS_PORT",
        "S3_PORT",
        "EMULATOR_PORT",
        "AIRFLOW_API_PORT",
    ):
        assert f"${{{variable}:-" in text, variable


def test_the_image_installs_from_the_lock_file() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.MULTILINE)
    assert re.search(r"^FROM \S+ AS airflow$", text, re.MULTILINE)
    assert re.search(r"^FROM \S+ AS s3$", text, re.MULTILINE)
    assert text.count("uv export --locked") == 2
    assert "--require-hashes" in text
    assert "--extra %s" in text
    assert 'EXTRAS="deploy s3 parquet emulator"' in text


def test_compose_builds_the_targets_the_dockerfile_has(services: dict[str, Any]) -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in targets, name


def test_init_script_creates_the_connection_the_operators_use() -> None:
    init = (REPO / "deploy" / "compose" / "init.py").read_text()
    assert 'conn_id="claude_batch_default"' in init
    assert 'conn_type="claude-batch"' in init
