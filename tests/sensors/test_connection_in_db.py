"""The deferred wait with its connection in the metadata database, as ``airflow dags test`` runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sensors.test_batch import DAG_FILE, descriptor

CONN_ID = "claude_batch_in_db"


@pytest.fixture
def connection_in_db(airflow_db: None, emulator: Any) -> Iterator[str]:
    """A connection stored only in the metadata database (no ``AIRFLOW_CONN_...`` variable)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == CONN_ID).delete()
        session.add(
            Connection(
                conn_id=CONN_ID, conn_type="claude-batch", host=emulator.base_url, password=emulator.api_key
            )
        )
    yield CONN_ID
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == CONN_ID).delete()


@pytest.mark.airflow
def test_the_deferred_wait_reads_a_connection_from_the_metadata_database(
    run_dag, emulator, connection_in_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", raising=False)
    emulator.faults({"processing_seconds": 3.0})
    # The sensor's own first poll fails (transient), so the wait always defers to the trigger, however
    # late the task starts after the batch ended.
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 500, "count": 1}})
    requests = [
        {
            "custom_id": f"doc-{index}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Summarise document {index}"}],
            },
        }
        for index in range(2)
    ]
    shard = {key: value for key, value in descriptor("", 2).items() if key != "batch_id"}
    out = tmp_path / "result.json"
    dag_file = tmp_path / "claude_batch_wait_db_conn.py"
    source = DAG_FILE.format(shard=shard, requests=requests, out=str(out))
    source = source.replace("ClaudeBatchHook()", f"ClaudeBatchHook({connection_in_db!r})")
    source = source.replace("shard=submit(), ", f"shard=submit(), conn_id={connection_in_db!r}, ")
    source = source.replace("claude_batch_wait_deferred", "claude_batch_wait_db_conn")
    dag_file.write_text(source)

    dag_run = run_dag(dag_file, "claude_batch_wait_db_conn")

    assert dag_run.state == "success"
    result = json.loads(out.read_text())
    assert result["request_counts"]["succeeded"] == 2
    stats = emulator.stats()
    assert stats["retrieves"] == 1  # the sensor's own, before deferring
    assert stats["lists"] >= 1  # the triggerer's poller, through the connection read from the database
