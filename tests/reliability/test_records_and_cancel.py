"""Records and cancel under faults, as a user meets them: real Airflow (``dag.test()``) and the emulator.

The nightly sample DAG over one day of tickets: a finished run gets late records and is cleared with
``on_input_change="add_new"``; the added shard's batch expires. Its requests must get round 0's
requeue (round 0's earlier ``requeue.json`` once came back as it was, and the records were lost).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.dags.test_run_isolation import PIPELINE, SAMPLE, add_late_tickets, day  # noqa: F401  (fixture)
from tests.dags.test_sample_dags_run import (
    Nightly,
    read_jsonl,
)

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
]


def test_a_late_data_resweep_requeues_the_added_shards_expired_requests(
    day: Nightly,  # noqa: F811
    emulator: Any,
    figures: Any,
) -> None:
    first = day.run()
    assert first.state == "success"
    folder = day.run_folder(first)
    assert (folder / "round-0" / "requeue.json").exists()  # round 0's requeue ran: nothing to requeue
    add_late_tickets(day, 3)
    emulator.faults({"expire_next": {"fraction": 1.0, "batches": 1}})  # the added shard's batch expires

    resweep = day.run(run_conf={"on_input_change": "add_new"})

    assert resweep.run_id == first.run_id  # the same run, cleared
    assert resweep.state == "success"
    record = json.loads((folder / "round-0" / "requeue.json").read_text())
    assert (record["requeued"], record["shards_read"]) == (3, [0, 1])
    round_1 = json.loads((folder / "round-1" / "shards.json").read_text())
    assert [shard["request_count"] for shard in round_1] == [3]
    manifest = day.manifest(resweep)
    assert manifest["input_records"] == 9
    assert manifest["dispositions"] == {
        "succeeded": 9,
        "invalid_output": 0,
        "dead_lettered": 0,
        "pending": 0,
        "refused": 0,
        "rejected": 0,
    }
    assert manifest["reconciled"] is True
    labels = read_jsonl(day.labels_file)
    assert {row["custom_id"] for row in labels} == {ticket["id"] for ticket in SAMPLE[:9]}
    lost = 9 - sum(manifest["dispositions"].values())
    figures.lines(lost=lost, doubled=0, checked=9)
    assert lost == 0


def test_a_cancel_in_the_middle_of_a_run_stops_every_spend_and_lists_the_rest_as_canceled(
    tmp_path: Any,
    run_dag: Any,
    make_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    figures: Any,
) -> None:
    """Two shards of 3 records against a queue of 4 requests: shard 0's batch (with its marker) fills
    the queue, shard 1 is refused with 429 and waits for capacity. The user cancels the run from a
    shell while batch 0 runs. Batch 0 is cancelled, shard 1 ends without creating, no requeue round is
    built; the report succeeds with every record pending, reason ``canceled``."""
    import threading
    import time

    from airflow.sdk import ObjectStoragePath

    from airflow_claude_batch.cancel import main
    from airflow_claude_batch.core.submit.state import read_state
    from tests.test_pipeline import manifest_of, states_of, write_run_dag

    # The waiting shard sleeps 10 s between tries: the cancel lands while no create of it is in flight.
    full = make_emulator(queue_limit=4, queue_retry_after=10)
    full.faults({"processing_seconds": 600})  # still running when the cancel comes, on a loaded machine too
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", full.connection_json)
    dag_file, storage = write_run_dag(
        tmp_path, "pipeline_canceled", 6, max_requests_per_shard=3, deferrable=True, pacing_timeout=600
    )
    dag_dir = storage / "pipeline_canceled"
    codes: list[int] = []
    seen: list[str] = []

    def cancel_once_one_batch_runs_and_the_other_shard_waits() -> None:
        deadline = time.monotonic() + 540
        while time.monotonic() < deadline:
            # One shard's batch runs and the other waits for capacity (its 429 recorded, no create in
            # flight): an intent whose create may still land would be reported as unknown (exit 1).
            # Which shard's create comes first is the executor's choice, so either order counts.
            paths = sorted(dag_dir.glob("*/claude_batch/round-0/shard-0000[01].state.json"))
            read = [read_state(ObjectStoragePath(f"file://{path}")) for path in paths]
            seen[:] = [repr(state) for state in read]
            running = [state for state in read if state is not None and state.batch_id]
            waiting = [state for state in read if state is not None and state.retry_at and not state.batch_id]
            if len(running) == 1 and len(waiting) == 1:
                run_id = paths[0].parent.parent.parent.name
                args = ["--storage", f"file://{storage}", "--dag-id", "pipeline_canceled", "--run-id", run_id]
                codes.append(main(args))
                return
            time.sleep(0.1)

    canceller = threading.Thread(target=cancel_once_one_batch_runs_and_the_other_shard_waits, daemon=True)
    canceller.start()
    dag_run = run_dag(dag_file, "pipeline_canceled")
    canceller.join(timeout=10)

    assert codes == [0], f"the run ended as {dag_run.state} {states_of(dag_run)}; last states seen: {seen}"
    out = capsys.readouterr().out
    assert "cancel requested" in out
    assert "stopped: 1 batch(es) cancelled" in out
    assert dag_run.state == "success"
    states = states_of(dag_run)
    assert states["round_0.submit"] == "skipped/success"  # shard 1 ended without creating
    assert states["report"] == "success"
    stats = full.stats()
    assert stats["batches_created"] == 1
    folder = storage / "pipeline_canceled" / dag_run.run_id / "claude_batch"
    assert json.loads((folder / "round-1" / "shards.json").read_text()) == []  # no requeue round
    assert states["round_0.wait"] == states["round_0.fanout"] == "success"  # batch 0's results were read
    assert states["round_1.submit"] == "skipped"
    manifest = manifest_of(storage, "pipeline_canceled", dag_run)
    assert manifest["dispositions"] == {
        "succeeded": 0,
        "invalid_output": 0,
        "dead_lettered": 0,
        "pending": 6,
        "refused": 0,
        "rejected": 0,
    }
    assert manifest["reconciled"] is True
    assert manifest["canceled"] is not None
    pending = read_jsonl(folder / "pending.jsonl")
    assert pending
    assert {row["reason"] for row in pending} == {"canceled"}
    figures.add("batches_created_after_a_cancel", stats["batches_created"] - 1)
