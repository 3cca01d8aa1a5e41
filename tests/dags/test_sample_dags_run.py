"""The sample DAGs run for real: ``dag.test()`` on SQLite against the emulator, on local disk and on S3.

Inputs are small slices of the bundled samples, and batches are polled every half second, so that each
run takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pendulum
import pytest

from airflow_claude_batch.emulator.answers.deterministic import classify, moderate
from airflow_claude_batch.links import ClaudeBatchReportLink
from tests.fixtures.airflow import SAMPLE_DAGS

pytestmark = [
    pytest.mark.airflow,
    # Airflow reads the sample .airflowignore through a pathspec API that pathspec deprecates.
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
]

NIGHTLY = "overnight_classification"
SWEEP = "monthly_moderation_sweep"
NIGHTLY_PIPELINE = "classify_tickets"
SWEEP_PIPELINE = "moderate_month"
LABELS = ["billing", "bug", "feature_request", "account", "shipping", "other"]
DAY = pendulum.datetime(2026, 11, 2, 18, tz="UTC")
TICKETS = 240
POSTS_PER_MONTH = 150


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


@dataclass
class Nightly:
    """The nightly DAG wired to a temporary storage and a slice of the sample tickets."""

    storage: Path
    tickets: list[dict[str, Any]]
    run: Callable[..., Any]

    def run_folder(self, dag_run: Any) -> Path:
        return self.storage / NIGHTLY / dag_run.run_id / NIGHTLY_PIPELINE

    def manifest(self, dag_run: Any) -> dict[str, Any]:
        return json.loads((self.run_folder(dag_run) / "manifest.json").read_text())

    @property
    def labels_file(self) -> Path:
        return self.storage / "labels" / "2026-11-02.jsonl"


@pytest.fixture
def nightly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any, dags_folder: Path, run_dag: Any
) -> Nightly:
    tickets = read_jsonl(SAMPLE_DAGS / "data" / "tickets" / "sample.jsonl")[:TICKETS]
    # A dated input: the DAG must put the run's day in place of {date}.
    write_jsonl(tmp_path / "tickets" / "2026-11-02.jsonl", tickets)
    storage = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_TICKETS", f"file://{tmp_path}/tickets/{{date}}.jsonl")
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{storage}")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.5")

    def run(**test_kwargs: Any) -> Any:
        test_kwargs.setdefault("logical_date", DAY)
        test_kwargs.setdefault("run_after", DAY)
        return run_dag(dags_folder / f"{NIGHTLY}.py", NIGHTLY, **test_kwargs)

    return Nightly(storage=storage, tickets=tickets, run=run)


def expected_label(text: str) -> str:
    return orjson.loads(classify(LABELS, text))["label"]


def assert_labels_match_tickets(labels_file: Path, tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = read_jsonl(labels_file)
    by_id = {row["custom_id"]: row for row in rows}
    assert len(by_id) == len(rows) == len(tickets)
    for ticket in tickets:
        row = by_id[ticket["id"]]
        assert set(row) == {"custom_id", "label", "confidence"}
        # Each label is the answer to that ticket's own text: results came back in arbitrary order.
        assert row["label"] == expected_label(ticket["text"])
        assert 0 <= row["confidence"] <= 1
    return rows


def labels_asset_events() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        query = (
            select(func.count(AssetEvent.id))
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "support_ticket_labels")
        )
        return session.scalar(query) or 0


def stored_xcom(dag_run: Any, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(key=key, run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id)
        row = session.execute(query.with_only_columns(XComModel.value)).first()
    return None if row is None else XComModel.deserialize_value(row)


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


def test_nightly_labels_every_ticket_on_local_storage(nightly: Nightly, emulator: Any) -> None:
    events_before = labels_asset_events()

    dag_run = nightly.run()

    assert dag_run.state == "success"
    manifest = nightly.manifest(dag_run)
    assert manifest["input_records"] == TICKETS
    assert manifest["dispositions"] == {
        "succeeded": TICKETS,
        "invalid_output": 0,
        "refused": 0,
        "dead_lettered": 0,
        "pending": 0,
        "rejected": 0,
    }
    assert manifest["reconciled"] is True
    assert set(manifest["tokens_by_model"]) == {"claude-sonnet-4-6"}
    assert_labels_match_tickets(nightly.labels_file, nightly.tickets)
    assert len(manifest["batch_ids"]) == emulator.stats()["batches_created"] == 1
    # The classifier prompt was written to the 1-hour cache once and read by the other requests.
    assert manifest["tokens"]["cache_write_1h"] > 0
    assert manifest["tokens"]["cache_read"] > manifest["tokens"]["cache_write_1h"]
    assert 0 < manifest["money"]["actual_usd"] < manifest["money"]["synchronous_equivalent_usd"]
    assert (nightly.run_folder(dag_run) / "report.html").exists()
    assert labels_asset_events() == events_before + 1


def test_nightly_triggered_without_a_logical_date_takes_the_day_it_was_queued(nightly: Nightly) -> None:
    # Airflow 3 lets a manual run have no logical date (and so no data interval).
    dag_run = nightly.run(logical_date=None, run_after=DAY.add(hours=1))

    assert dag_run.state == "success"
    assert dag_run.logical_date is None
    assert_labels_match_tickets(nightly.labels_file, nightly.tickets)


def test_nightly_rerun_of_the_same_run_creates_no_new_batch(nightly: Nightly, emulator: Any) -> None:
    first = nightly.run()
    assert first.state == "success"
    created = emulator.stats()["batches_created"]

    second = nightly.run()

    assert second.state == "success"
    assert second.run_id == first.run_id
    assert emulator.stats()["batches_created"] == created
    assert nightly.manifest(second)["dispositions"]["succeeded"] == TICKETS
    assert_labels_match_tickets(nightly.labels_file, nightly.tickets)


def test_nightly_requeues_expired_requests_in_round_one(nightly: Nightly, emulator: Any) -> None:
    emulator.faults({"expire_next": {"fraction": 0.2, "batches": 1}})

    dag_run = nightly.run()

    assert dag_run.state == "success"
    manifest = nightly.manifest(dag_run)
    first, second = manifest["rounds"][:2]
    assert first["outcomes"]["expired"] > 0
    assert first["requeued"] == first["outcomes"]["expired"]
    assert second["requests"] == first["outcomes"]["expired"]
    assert second["outcomes"]["succeeded"] == first["outcomes"]["expired"]
    assert manifest["dispositions"]["succeeded"] == TICKETS
    assert manifest["dispositions"]["pending"] == 0
    assert emulator.stats()["batches_created"] == 2
    assert_labels_match_tickets(nightly.labels_file, nightly.tickets)


def test_nightly_without_requeue_rounds_lists_expired_requests_as_pending(
    nightly: Nightly, emulator: Any
) -> None:
    emulator.faults({"expire_next": {"fraction": 0.2, "batches": 1}})

    form = {"requeue_rounds": 0, "model": "claude-haiku-4-5", "max_tokens": 32}
    dag_run = nightly.run(run_conf=form)

    assert dag_run.state == "success"
    manifest = nightly.manifest(dag_run)
    assert set(manifest["tokens_by_model"]) == {"claude-haiku-4-5"}
    request = orjson.loads(
        (nightly.run_folder(dag_run) / "round-0" / "shard-00000.requests.jsonl").open().readline()
    )
    assert (request["params"]["model"], request["params"]["max_tokens"]) == ("claude-haiku-4-5", 32)
    assert request["params"]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "Labels: billing, bug" in request["params"]["system"][0]["text"]
    expired = manifest["rounds"][0]["outcomes"]["expired"]
    assert expired > 0
    assert len(manifest["rounds"]) == 1
    assert emulator.stats()["batches_created"] == 1
    assert manifest["dispositions"]["pending"] == expired
    assert manifest["dispositions"]["succeeded"] == TICKETS - expired
    pending = read_jsonl(nightly.run_folder(dag_run) / "pending.jsonl")
    labelled = {row["custom_id"] for row in read_jsonl(nightly.labels_file)}
    # Every ticket is either labelled or listed as pending, never both, never neither.
    assert {row["custom_id"] for row in pending} | labelled == {ticket["id"] for ticket in nightly.tickets}
    assert not {row["custom_id"] for row in pending} & labelled


def test_nightly_dry_run_estimates_without_submitting(nightly: Nightly, emulator: Any) -> None:
    dag_run = nightly.run(run_conf={"dry_run": True})

    assert dag_run.state == "success"
    assert emulator.stats()["batches_created"] == 0
    run_folder = nightly.run_folder(dag_run)
    estimate = json.loads((run_folder / "estimate.json").read_text())
    assert estimate["records"] == TICKETS
    manifest = nightly.manifest(dag_run)
    assert manifest["money"]["estimated_upper_usd"] > 0
    assert manifest["batch_ids"] == []
    assert not nightly.labels_file.exists()  # a dry run never replaces a day's labels
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["classify_tickets.report"] == "skipped"  # no labels, so no Asset event
    assert states["classify_tickets.round_0.submit"] == "skipped"


def test_nightly_over_budget_fails_before_spending(nightly: Nightly, emulator: Any) -> None:
    dag_run = nightly.run(run_conf={"max_cost_usd": 0.0001})

    assert dag_run.state == "failed"
    assert emulator.stats()["batches_created"] == 0
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["classify_tickets.build"] == "failed"
    assert states["classify_tickets.report"] == "upstream_failed"


# --- S3 ------------------------------------------------------------------------------------------------


def s3_lines(client: Any, key: str) -> list[dict[str, Any]]:
    body = client.get_object(Bucket="claude-runs", Key=key)["Body"].read()
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def test_nightly_on_s3_through_an_aws_connection(
    nightly: Nightly, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", "s3://claude-runs/support")
    monkeypatch.setenv("AIRFLOW__CLAUDE_BATCH__STORAGE_CONN_ID", "aws_default")

    dag_run = nightly.run()

    assert dag_run.state == "success"
    prefix = f"support/{NIGHTLY}/{dag_run.run_id}/{NIGHTLY_PIPELINE}"
    manifest = json.loads(s3.get_object(Bucket="claude-runs", Key=f"{prefix}/manifest.json")["Body"].read())
    assert manifest["dispositions"]["succeeded"] == TICKETS
    labels = s3_lines(s3, "support/labels/2026-11-02.jsonl")
    assert len(labels) == TICKETS
    assert {row["custom_id"] for row in labels} == {ticket["id"] for ticket in nightly.tickets}
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="claude-runs", Prefix=prefix)["Contents"]}
    assert f"{prefix}/round-0/shards.json" in keys
    assert f"{prefix}/report.html" in keys
    assert not nightly.storage.exists()  # nothing went to the local default
    # The URIs people and downstream tasks read are ones any S3 tool opens: no connection id inside.
    extra = latest_labels_event_extra()
    assert extra["output_uri"] == "s3://claude-runs/support/labels/2026-11-02.jsonl"
    assert extra["manifest_uri"] == f"s3://claude-runs/{prefix}/manifest.json"
    # The report task's extra link opens the report page in the S3 console.
    link = stored_xcom(dag_run, f"{NIGHTLY_PIPELINE}.report", ClaudeBatchReportLink().xcom_key)
    assert link == "https://s3.console.aws.amazon.com/s3/object/claude-runs?prefix=" + quote(
        f"{prefix}/report.html"
    )


# --- the monthly sweep ---------------------------------------------------------------------------------


def test_two_month_backfill_of_the_sweep_gives_two_complete_independent_months(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any, dags_folder: Path, run_dag: Any
) -> None:
    posts = {}
    for month in ("2026-08", "2026-09"):
        posts[month] = read_jsonl(SAMPLE_DAGS / "data" / "content" / f"{month}.jsonl")[:POSTS_PER_MONTH]
        write_jsonl(tmp_path / "content" / f"{month}.jsonl", posts[month])
    storage = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_CONTENT", f"file://{tmp_path}/content/{{month}}.jsonl")
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{storage}")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.5")
    # A run covers the month before its logical date's month boundary, as a backfill's runs do.
    runs = {}
    for month, logical_date in (("2026-08", (2026, 9, 1)), ("2026-09", (2026, 10, 1))):
        when = pendulum.datetime(*logical_date, tz="UTC")
        runs[month] = run_dag(dags_folder / f"{SWEEP}.py", SWEEP, logical_date=when, run_after=when)

    sweep_root = storage / "moderation" / "policy-2026.11"
    assert len({dag_run.run_id for dag_run in runs.values()}) == 2
    assert emulator.stats()["batches_created"] == 2
    for month, dag_run in runs.items():
        assert dag_run.state == "success"
        run_folder = sweep_root / SWEEP / dag_run.run_id / SWEEP_PIPELINE
        manifest = json.loads((run_folder / "manifest.json").read_text())
        assert manifest["dispositions"]["succeeded"] == POSTS_PER_MONTH
        verdicts = read_jsonl(sweep_root / "verdicts" / f"{month}.jsonl")
        assert {row["custom_id"] for row in verdicts} == {post["id"] for post in posts[month]}
        assert all(row["policy_version"] == "2026.11" for row in verdicts)
        texts = {post["id"]: post["text"] for post in posts[month]}
        expected_flags = {
            post_id
            for post_id, text in texts.items()
            if orjson.loads(moderate("2026.11", text))["verdict"] == "flag"
        }
        flags = read_jsonl(sweep_root / "flags" / f"{month}.jsonl")
        assert expected_flags  # the sample months hold content to flag
        assert {row["custom_id"] for row in flags} == expected_flags
        assert all(row["reason"] and row["category"] != "none" for row in flags)


# --- the monthly RAG enrichment ------------------------------------------------------------------------

RAG = "monthly_rag_enrichment"
RAG_PIPELINE = "enrich_chunks"


def test_rag_enrichment_sends_only_the_changed_and_new_chunks_the_next_month(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any, dags_folder: Path, run_dag: Any
) -> None:
    chunks = read_jsonl(SAMPLE_DAGS / "data" / "corpus" / "handbook.jsonl")
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, chunks)
    storage = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_CORPUS", f"file://{corpus}")
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{storage}")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.5")
    november, december = pendulum.datetime(2026, 12, 1, tz="UTC"), pendulum.datetime(2027, 1, 1, tz="UTC")

    first = run_dag(dags_folder / f"{RAG}.py", RAG, logical_date=november, run_after=november)
    edited = [
        dict(chunk, text=chunk["text"] + " (Updated.)") if n < 3 else chunk for n, chunk in enumerate(chunks)
    ]
    added = [
        {"id": f"hb-new-{n}", "section": "plans", "title": f"New {n}", "text": f"A new chunk {n}."}
        for n in range(2)
    ]
    write_jsonl(corpus, edited + added)
    second = run_dag(dags_folder / f"{RAG}.py", RAG, logical_date=december, run_after=december)

    assert first.state == second.state == "success"
    root = storage / "rag"
    manifests = [
        json.loads((root / RAG / run.run_id / RAG_PIPELINE / "manifest.json").read_text())
        for run in (first, second)
    ]
    assert [sum(r["requests"] for r in m["rounds"]) for m in manifests] == [len(chunks), 5]
    assert manifests[1]["reused"]["requests"] == len(chunks) - 3
    assert manifests[1]["reused"]["saved_usd"] > 0
    assert emulator.stats()["batches_created"] == 2
    enriched = read_jsonl(root / "enriched" / "2026-12.jsonl")
    assert sorted(row["custom_id"] for row in enriched) == sorted(c["id"] for c in edited + added)
    assert all(row["summary"] and row["keywords"] and row["title"] for row in enriched)
