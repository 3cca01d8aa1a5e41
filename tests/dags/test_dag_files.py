"""The sample DAG files: they parse cleanly, touch nothing while parsing, and their form and data fit."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from airflow_claude_batch.compat import (
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    ParamValidationError,
    cron_parts,
)
from airflow_claude_batch.core.api.limits import CUSTOM_ID_PATTERN

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
PACKAGE = REPO / "airflow_claude_batch"
PROBE = Path(__file__).with_name("parse_probe.py")
# The API caches a system prompt of at least 1,024 tokens; at four characters a token, with a margin.
MIN_CACHED_PROMPT_CHARS = 4_200


def probe_parse(dags_folder: Path, tmp_path: Path) -> dict:
    result_file = tmp_path / "probe.json"
    completed = subprocess.run(
        [sys.executable, str(PROBE), str(dags_folder), str(PACKAGE), str(result_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(result_file.read_text())


def load_dag_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_sample_{name}", DAGS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nightly() -> ModuleType:
    return load_dag_module("overnight_classification")


@pytest.fixture(scope="module")
def sweep() -> ModuleType:
    return load_dag_module("monthly_moderation_sweep")


def test_every_dag_file_parses_without_errors_warnings_or_io(tmp_path: Path) -> None:
    report = probe_parse(DAGS, tmp_path)
    assert report["import_errors"] == {}
    assert report["warnings"] == []
    assert report["dag_ids"] == [
        "monthly_moderation_sweep",
        "monthly_rag_enrichment",
        "overnight_classification",
        "prompt_model_eval",
        "quickstart",
        "wait_for_external_batch",
    ]
    assert report["touched"] == []
    assert "classify_tickets.round_0.submit" in report["tasks"]["overnight_classification"]
    assert "extract_flags" in report["tasks"]["monthly_moderation_sweep"]


def test_the_probe_catches_a_dag_that_reads_files_and_calls_out_while_parsing(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    (dags / "data").mkdir(parents=True)
    (dags / "data" / "rows.jsonl").write_text("{}\n")
    (dags / "greedy.py").write_text(
        "import socket, sqlite3\n"
        "from pathlib import Path\n"
        "import pendulum\n"
        "from airflow.sdk import DAG\n"
        "rows = (Path(__file__).parent / 'data' / 'rows.jsonl').read_text()\n"
        "sqlite3.connect(':memory:').close()\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=0.2)\n"
        "except OSError:\n"
        "    pass\n"
        "with DAG('greedy', schedule=None, start_date=pendulum.datetime(2026, 1, 1)):\n"
        "    pass\n"
    )
    report = probe_parse(dags, tmp_path)
    assert report["dag_ids"] == ["greedy"]
    touched = " ".join(report["touched"])
    assert "rows.jsonl" in touched
    assert "sqlite3.connect" in touched
    assert "socket.connect" in touched


def test_nightly_schedule_is_18h_without_catchup(nightly: ModuleType) -> None:
    dag = nightly.dag
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert cron_parts(dag.timetable) == ("0 18 * * *", timedelta(days=1))
    assert dag.catchup is False
    assert dag.render_template_as_native_obj is True


def test_sweep_is_monthly_with_catchup_over_the_bundled_months(sweep: ModuleType) -> None:
    dag = sweep.dag
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is True
    first_month = dag.start_date.format("YYYY-MM")
    bundled = sorted(path.stem for path in (DAGS / "data" / "content").glob("*.jsonl"))
    assert bundled[0] == first_month
    assert len(bundled) >= 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", "many"),
        ("max_cost_usd", -1),
        ("requeue_rounds", -1),
        ("requeue_rounds", 3),
        ("dry_run", "yes"),
        ("model", ""),
        ("budget_basis", "median"),
    ],
)
def test_the_trigger_form_rejects_bad_values(nightly: ModuleType, name: str, value: object) -> None:
    params = copy.deepcopy(nightly.dag.params)
    with pytest.raises(ParamValidationError):
        params[name] = value


def test_the_trigger_form_documents_every_field(nightly: ModuleType, sweep: ModuleType) -> None:
    for dag in (nightly.dag, sweep.dag):
        for name, param in dag.params.items():
            assert param.schema.get("title"), f"{dag.dag_id}: {name} has no title"
            assert len(param.description or "") > 20, f"{dag.dag_id}: {name} has no description"
            assert "type" in param.schema, f"{dag.dag_id}: {name} has no type"
    expected = {
        "input_path",
        "model",
        "max_tokens",
        "max_cost_usd",
        "budget_basis",
        "requeue_rounds",
        "dry_run",
        "on_input_change",
        "retry_errored_sync",
        "replace_output",
    }
    assert set(nightly.dag.params) == expected
    for dag in (nightly.dag, sweep.dag):
        assert dag.params.get_param("on_input_change").schema["enum"] == ["fail", "keep", "add_new"]
        assert dag.params["budget_basis"] == "expected"
        assert dag.params["retry_errored_sync"] is False
        assert dag.task_dict[f"{next(iter(dag.task_group.children))}.build"].budget_basis == (
            "{{ params.budget_basis }}"
        )


def test_the_classifier_prompt_names_the_dag_labels_and_is_long_enough_to_cache(nightly: ModuleType) -> None:
    prompt = (DAGS / "prompts" / "ticket_classifier.md").read_text()
    labels_line = re.search(r"^Labels: (.+)$", prompt, re.MULTILINE)
    assert labels_line is not None
    assert tuple(label.strip() for label in labels_line.group(1).split(",")) == nightly.LABELS
    assert set(nightly.LABEL_SCHEMA["properties"]["label"]["enum"]) == set(nightly.LABELS)
    assert len(prompt) >= MIN_CACHED_PROMPT_CHARS
    assert "{{" not in prompt
    assert "{%" not in prompt  # it is included as a Jinja template


def test_the_policy_prompt_states_the_dag_policy_version(sweep: ModuleType) -> None:
    prompt = (DAGS / "prompts" / f"moderation_policy_{sweep.POLICY_VERSION}.md").read_text()
    assert re.search(rf"^Policy version: {re.escape(sweep.POLICY_VERSION)}$", prompt, re.MULTILINE)
    assert len(prompt) >= MIN_CACHED_PROMPT_CHARS
    assert "{{" not in prompt
    assert "{%" not in prompt


def test_the_committed_samples_are_what_the_generator_writes(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(DAGS / "data" / "make_samples.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_sample_records_have_unique_valid_ids_and_text() -> None:
    tickets = DAGS / "data" / "tickets" / "sample.jsonl"
    ids = _ids(tickets)
    assert 2_000 <= len(ids) <= 5_000
    months = sorted((DAGS / "data" / "content").glob("*.jsonl"))
    for path in [tickets, *months]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len({row["id"] for row in rows}) == len(rows), path
        assert all(CUSTOM_ID_PATTERN.match(row["id"]) for row in rows), path
        assert all(row["text"].strip() for row in rows), path
    for path in months:
        assert all(row["posted_at"].startswith(path.stem) for row in map(json.loads, path.open()))


def test_the_trigger_forms_can_be_submitted_with_their_defaults(
    nightly: ModuleType, sweep: ModuleType
) -> None:
    # The UI's form marks a field required unless its type admits null: an optional field left empty
    # must be nullable, or the Trigger button stays disabled with the defaults.
    for dag in (nightly.dag, sweep.dag):
        dag.params.validate()
        for name, param in dag.params.items():
            if param.value in ("", None):
                types = param.schema["type"]
                assert "null" in (types if isinstance(types, list) else [types]), f"{dag.dag_id}: {name}"
