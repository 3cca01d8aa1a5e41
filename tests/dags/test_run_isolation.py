"""Reruns and later runs of the nightly DAG never ignore changed input nor replace another run's output.

Real Airflow (``dag.test()`` on SQLite) against the emulator. ``dag.test()`` names a run after its
logical date and ``run_after``: the same pair reruns the same run (its run folder, as a clear does),
another ``run_after`` makes another run of the same data interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.dags.conftest import SAMPLE_DAGS
from tests.dags.test_sample_dags_run import DAY, NIGHTLY, Nightly, read_jsonl, write_jsonl

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
]

PIPELINE = "classify_tickets"
SAMPLE = read_jsonl(SAMPLE_DAGS / "data" / "tickets" / "sample.jsonl")


@pytest.fixture
def day(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    emulator: Any,
    dags_folder: Path,
    run_dag: Any,
) -> Nightly:
    """The nightly DAG over a day of six tickets (the day's own input), polling fast."""
    write_jsonl(tmp_path / "tickets" / "2026-11-02.jsonl", SAMPLE[:6])
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_TICKETS", f"file://{tmp_path}/tickets/{{date}}.jsonl")
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{tmp_path / 'storage'}")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.3")

    def run(**test_kwargs: Any) -> Any:
        test_kwargs.setdefault("logical_date", DAY)
        test_kwargs.setdefault("run_after", DAY)
        return run_dag(dags_folder / f"{NIGHTLY}.py", NIGHTLY, **test_kwargs)

    return Nightly(storage=tmp_path / "storage", tickets=SAMPLE[:6], run=run)


def tickets_file(day: Nightly) -> Path:
    return day.storage.parent / "tickets" / "2026-11-02.jsonl"


def add_late_tickets(day: Nightly, count: int) -> None:
    write_jsonl(tickets_file(day), SAMPLE[: 6 + count])


def task_state(dag_run: Any, task_id: str) -> str:
    return next(ti.state for ti in dag_run.get_task_instances() if ti.task_id == task_id)


def latest_labels_event_extra() -> dict[str, Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "support_ticket_labels")
            .order_by(AssetEvent.id.desc())
        )
        return dict(session.scalars(query).first() or {})


# --- outputs have one owner ----------------------------------------------------------------------------


def test_a_manual_run_with_a_custom_input_does_not_replace_the_days_labels(
    day: Nightly, emulator: Any, tmp_path: Path
) -> None:
    nightly_run = day.run()
    assert nightly_run.state == "success"
    assert len(read_jsonl(day.labels_file)) == 6
    assert latest_labels_event_extra()["run_id"] == nightly_run.run_id

    custom = tmp_path / "escalations.jsonl"
    write_jsonl(custom, SAMPLE[100:102])
    manual = day.run(
        logical_date=None, run_after=DAY.add(hours=2), run_conf={"input_path": f"file://{custom}"}
    )

    assert manual.state == "success"
    assert len(read_jsonl(day.labels_file)) == 6  # the nightly's labels, untouched
    own_output = day.run_folder(manual) / "output.jsonl"
    assert {row["custom_id"] for row in read_jsonl(own_output)} == {t["id"] for t in SAMPLE[100:102]}
    owner = json.loads(day.labels_file.with_name("2026-11-02.jsonl.owner.json").read_text())
    assert owner["run_id"] == nightly_run.run_id
    assert day.manifest(manual)["files"]["output"].endswith("output.jsonl")
    extra = latest_labels_event_extra()
    assert extra["run_id"] == manual.run_id
    assert extra["output_uri"].endswith(f"{manual.run_id}/{PIPELINE}/output.jsonl")


def test_a_second_run_of_the_interval_over_its_own_input_replaces_the_labels(day: Nightly) -> None:
    first = day.run()
    second = day.run(run_after=DAY.add(hours=3))

    assert first.state == second.state == "success"
    assert first.run_id != second.run_id
    owner = json.loads(day.labels_file.with_name("2026-11-02.jsonl.owner.json").read_text())
    assert owner["run_id"] == second.run_id
    assert len(read_jsonl(day.labels_file)) == 6


# --- input changes are never ignored -------------------------------------------------------------------


def test_an_unchanged_input_is_reused_on_a_rerun(day: Nightly, emulator: Any) -> None:
    assert day.run().state == "success"
    again = day.run()

    assert again.state == "success"
    assert emulator.stats()["batches_created"] == 1


def test_a_changed_input_with_nothing_submitted_is_rebuilt(
    day: Nightly, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key is wrong: the build succeeds, the submit is refused, nothing is submitted.
    wrong = json.dumps({"conn_type": "claude-batch", "host": emulator.base_url, "password": "sk-ant-wrong"})
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", wrong)
    failed = day.run()
    assert failed.state == "failed"
    assert emulator.stats()["batches_created"] == 0

    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", emulator.connection_json)
    add_late_tickets(day, 2)
    fixed = day.run()

    assert fixed.state == "success"
    manifest = day.manifest(fixed)
    assert manifest["input_records"] == 8
    assert manifest["dispositions"]["succeeded"] == 8
    assert manifest["reconciled"] is True
    assert emulator.stats()["batches_created"] == 1
    assert len(read_jsonl(day.labels_file)) == 8


def test_a_changed_input_after_a_submit_fails_before_spending(day: Nightly, emulator: Any) -> None:
    assert day.run().state == "success"
    add_late_tickets(day, 2)

    again = day.run()

    assert again.state == "failed"
    assert task_state(again, f"{PIPELINE}.build") == "failed"
    assert emulator.stats()["batches_created"] == 1
    assert emulator.stats()["creates_received"] == 1
    assert len(read_jsonl(day.labels_file)) == 6


def test_keep_finishes_the_rerun_with_the_shards_built(day: Nightly, emulator: Any) -> None:
    assert day.run().state == "success"
    add_late_tickets(day, 2)

    kept = day.run(run_conf={"on_input_change": "keep"})

    assert kept.state == "success"
    assert emulator.stats()["batches_created"] == 1
    assert day.manifest(kept)["input_records"] == 6


def test_add_new_on_a_rerun_sends_only_the_late_records(day: Nightly, emulator: Any) -> None:
    assert day.run().state == "success"
    add_late_tickets(day, 2)

    resweep = day.run(run_conf={"on_input_change": "add_new"})

    assert resweep.state == "success"
    stats = emulator.stats()
    assert stats["batches_created"] == 2
    manifest = day.manifest(resweep)
    assert manifest["input_records"] == 8
    assert manifest["dispositions"]["succeeded"] == 8
    assert manifest["reconciled"] is True
    assert manifest["rounds"][0]["requests"] == 8
    assert {row["custom_id"] for row in read_jsonl(day.labels_file)} == {t["id"] for t in SAMPLE[:8]}


def test_add_new_in_a_new_run_of_the_interval_sends_only_unanswered_records(
    day: Nightly, emulator: Any
) -> None:
    first = day.run()
    assert first.state == "success"
    add_late_tickets(day, 3)

    resweep = day.run(run_after=DAY.add(hours=5), run_conf={"on_input_change": "add_new"})

    assert resweep.state == "success"
    assert resweep.run_id != first.run_id
    manifest = day.manifest(resweep)
    assert manifest["input_records"] == 3  # only the late tickets were sent
    assert manifest["rounds"][0]["requests"] == 3
    assert manifest["answered_earlier"]["records"] == 6
    [earlier_run] = manifest["answered_earlier"]["runs"]
    assert earlier_run.endswith(f"{first.run_id}/{PIPELINE}")
    assert manifest["reconciled"] is True
    assert emulator.stats()["batches_created"] == 2
    labels = read_jsonl(day.labels_file)
    assert {row["custom_id"] for row in labels} == {t["id"] for t in SAMPLE[:9]}
    assert len(labels) == 9
