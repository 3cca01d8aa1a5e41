"""``reuse_answers`` as a user meets it: real ``dag.test()`` runs of the pipeline against the emulator
(the real SDK over HTTP), one storage root shared by the runs and DAGs of a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pendulum
import pytest

from airflow_claude_batch.core.reuse import AnswerStoreLayout

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.pipeline import claude_batch_pipeline


def label(text):
    if "unreadable" in text:
        raise ValueError("not a label")
    return text


with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:
    claude_batch_pipeline(
        source={source!r},
        storage={storage!r},
        model={model!r},
        max_tokens=32,
        system="Summarise the chunk in one line.",
        max_rounds=1,
        poll_interval=0.5,
        output_parser=label,
        output_uri={output!r},
        reuse_answers={reuse!r},
    )
"""
FIRST = pendulum.datetime(2026, 1, 1, tz="UTC")
SECOND = pendulum.datetime(2026, 2, 1, tz="UTC")


def corpus(path: Path, chunks: dict[str, str]) -> str:
    path.write_bytes(
        b"".join(orjson.dumps({"id": cid, "text": text}) + b"\n" for cid, text in chunks.items())
    )
    return f"file://{path}"


def write_dag(
    tmp_path: Path, dag_id: str, source: str, *, reuse: Any = True, model: str = "claude-haiku-4-5"
) -> Path:
    dag_file = tmp_path / f"{dag_id}.py"
    dag_file.write_text(
        DAG_SOURCE.format(
            dag_id=dag_id,
            source=source,
            storage=f"file://{tmp_path / 'runs'}",
            model=model,
            output=f"file://{tmp_path}/out/{dag_id}-{{{{ ds_nodash }}}}.jsonl",
            reuse=reuse,
        )
    )
    return dag_file


def manifest(tmp_path: Path, dag_id: str, dag_run: Any) -> dict[str, Any]:
    return json.loads(
        (tmp_path / "runs" / dag_id / dag_run.run_id / "claude_batch" / "manifest.json").read_text()
    )


def flat(tmp_path: Path, dag_id: str, day: pendulum.DateTime) -> list[dict[str, Any]]:
    path = tmp_path / "out" / f"{dag_id}-{day.strftime('%Y%m%d')}.jsonl"
    return sorted(
        (json.loads(line) for line in path.read_text().splitlines()), key=lambda row: row["custom_id"]
    )


def sent(document: dict[str, Any]) -> int:
    return sum(round_["requests"] for round_ in document["rounds"])


CHUNKS = {f"c-{n:03d}": f"chunk {n} of the handbook" for n in range(12)}


@pytest.mark.airflow
def test_a_second_run_over_the_same_corpus_sends_nothing_and_writes_the_same_output(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    dag_file = write_dag(tmp_path, "rag_same", corpus(tmp_path / "corpus.jsonl", CHUNKS))
    first = run_dag(dag_file, "rag_same", logical_date=FIRST)
    assert first.state == "success"
    assert emulator.stats()["batches_created"] == 1
    first_manifest = manifest(tmp_path, "rag_same", first)

    second = run_dag(dag_file, "rag_same", logical_date=SECOND)

    assert second.state == "success"
    assert emulator.stats()["batches_created"] == 1, "the second run sent nothing"
    document = manifest(tmp_path, "rag_same", second)
    assert sent(document) == 0
    assert document["reused"]["requests"] == 12
    assert document["reused"]["saved_usd"] == pytest.approx(first_manifest["money"]["actual_usd"], rel=0.2)
    assert document["money"]["actual_usd"] == 0
    assert document["dispositions"]["succeeded"] == document["input_records"] == 12
    assert document["reconciled"]
    page = (tmp_path / "runs" / "rag_same" / second.run_id / "claude_batch" / "report.html").read_text()
    assert "reused, bought earlier for" in page
    assert flat(tmp_path, "rag_same", SECOND) == flat(tmp_path, "rag_same", FIRST)
    rows = [
        json.loads(line)
        for line in (tmp_path / "runs" / "rag_same" / second.run_id / "claude_batch" / "reused.jsonl")
        .read_text()
        .splitlines()
    ]
    assert {row["reused_from"]["run"].rsplit("/", 2)[-2] for row in rows} == {first.run_id}
    assert all(row["reused_from"]["batch"].startswith("msgbatch_") and row["cost_usd"] == 0 for row in rows)


@pytest.mark.airflow
def test_a_corpus_with_changed_and_new_chunks_sends_only_those(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    source = tmp_path / "corpus.jsonl"
    dag_file = write_dag(tmp_path, "rag_changed", corpus(source, CHUNKS))
    assert run_dag(dag_file, "rag_changed", logical_date=FIRST).state == "success"
    changed = {**CHUNKS, "c-003": "chunk 3, rewritten", "c-007": "chunk 7, rewritten"}
    changed |= {"c-100": "a new chunk", "c-101": "another new chunk"}
    corpus(source, changed)

    second = run_dag(dag_file, "rag_changed", logical_date=SECOND)

    document = manifest(tmp_path, "rag_changed", second)
    assert sent(document) == 4
    assert document["reused"]["requests"] == 10
    assert document["dispositions"]["succeeded"] == document["input_records"] == 14
    by_id = {row["custom_id"]: row for row in flat(tmp_path, "rag_changed", SECOND)}
    assert "rewritten" in by_id["c-003"]["parsed"], "a changed chunk never gets its old answer"


@pytest.mark.airflow
def test_another_model_or_reuse_left_off_sends_everything(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    source = corpus(tmp_path / "corpus.jsonl", CHUNKS)
    assert (
        run_dag(write_dag(tmp_path, "rag_haiku", source), "rag_haiku", logical_date=FIRST).state == "success"
    )

    other_model = run_dag(
        write_dag(tmp_path, "rag_sonnet", source, model="claude-sonnet-4-5"), "rag_sonnet", logical_date=FIRST
    )
    left_off = run_dag(write_dag(tmp_path, "rag_off", source, reuse=False), "rag_off", logical_date=FIRST)

    assert sent(manifest(tmp_path, "rag_sonnet", other_model)) == 12
    assert sent(manifest(tmp_path, "rag_off", left_off)) == 12
    assert manifest(tmp_path, "rag_off", left_off)["reused"]["requests"] == 0


@pytest.mark.airflow
def test_a_second_pipeline_sharing_the_root_reuses_the_firsts_answers(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    source = corpus(tmp_path / "corpus.jsonl", CHUNKS)
    assert (
        run_dag(write_dag(tmp_path, "rag_team_a", source), "rag_team_a", logical_date=FIRST).state
        == "success"
    )

    other = run_dag(write_dag(tmp_path, "rag_team_b", source, reuse="30d"), "rag_team_b", logical_date=FIRST)

    assert emulator.stats()["batches_created"] == 1
    assert manifest(tmp_path, "rag_team_b", other)["reused"]["requests"] == 12
    assert flat(tmp_path, "rag_team_b", FIRST) == flat(tmp_path, "rag_team_a", FIRST)


@pytest.mark.airflow
def test_invalid_and_refused_answers_are_never_stored_so_they_are_sent_again(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    chunks = {
        **{f"c-{n:03d}": f"chunk {n}" for n in range(4)},
        "c-bad": "an unreadable chunk",
        "c-refused": "chunk [[emulator:stop_reason=refusal]]",
    }
    dag_file = write_dag(tmp_path, "rag_bad", corpus(tmp_path / "corpus.jsonl", chunks))
    first = manifest(tmp_path, "rag_bad", run_dag(dag_file, "rag_bad", logical_date=FIRST))
    assert (first["dispositions"]["invalid_output"], first["dispositions"]["refused"]) == (1, 1)
    assert len(list(AnswerStoreLayout(tmp_path / "runs").entries())) == 4

    second = manifest(tmp_path, "rag_bad", run_dag(dag_file, "rag_bad", logical_date=SECOND))

    assert sent(second) == 2
    assert second["reused"]["requests"] == 4
    assert (second["dispositions"]["invalid_output"], second["dispositions"]["refused"]) == (1, 1)
