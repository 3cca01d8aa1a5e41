"""A small DAG that exercises every process of the topology without calling any API.

``make topology-check DAG=topology_smoke`` runs it instead of the nightly DAG: a deferred sensor
(resumed by the triggerer), a task mapped over three inputs (spread over the Celery workers) and a
task that sums the mapped results. It separates a broken deployment from a broken pipeline.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, task

with DAG(
    dag_id="topology_smoke",
    description="Deferral, mapping and the Celery workers, with no external service",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["deploy"],
) as dag:
    # Ten seconds after the run was queued: long enough that the sensor really defers.
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time="{{ (dag_run.run_after + macros.timedelta(seconds=10)).isoformat() }}",
    )

    @task
    def square(value: int) -> int:
        return value * value

    @task
    def total(values: list[int]) -> int:
        result = sum(values)
        if result != 14:
            raise ValueError(f"the mapped squares of 1, 2, 3 add up to 14, got {result}")
        return result

    squares = square.expand(value=[1, 2, 3])
    wait >> squares
    total(squares)
