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
from tests.dags.test_sample_dags_run import (  # noqa: F401  (fixtures)
    Nightly,
    dags_folder,
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
    assert manifest["dispositions"] == {"succeeded": 9, "invalid_output": 0, "dead_lettered": 0, "pending": 0}
    assert manifest["reconciled"] is True
    labels = read_jsonl(day.labels_file)
    assert {row["custom_id"] for row in labels} == {ticket["id"] for ticket in SAMPLE[:9]}
    lost = 9 - sum(manifest["dispositions"].values())
    figures.lines(lost=lost, doubled=0, checked=9)
    assert lost == 0
