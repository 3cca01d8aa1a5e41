"""Wait for a batch made elsewhere (a notebook, another service) and hand its counts downstream.

Trigger it with the batch id (``msgbatch_...``) in the form. The wait is deferred to the triggerer; the
``Claude batch`` button of the wait task opens the batch in the Claude Console (first-party API), or
follows ``[claude_batch] batch_link``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

with DAG(
    dag_id="wait_for_external_batch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"batch_id": Param("msgbatch_", type="string", pattern="^msgbatch_", title="Batch id")},
    tags=["claude", "batch"],
    doc_md=__doc__,
) as dag:
    # [START howto_sensor_claude_batch_by_id]
    wait = ClaudeBatchSensor(
        task_id="wait",
        batch_id="{{ params.batch_id }}",
        deferrable=True,
        timeout=26 * 3600,  # a batch ends within 24 hours; give up a little after
        soft_fail=False,
    )

    @task
    def report(result: dict) -> None:
        counts = result["request_counts"]
        print(f"batch {result['batch_id']}: {counts['succeeded']} succeeded, {counts['errored']} errored")

    report(wait.output)
    # [END howto_sensor_claude_batch_by_id]
