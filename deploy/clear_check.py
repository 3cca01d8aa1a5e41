"""Clearing a run while its waits are deferred cancels nothing, and its rerun pays nothing again.

Run by the topology check after the nightly run: a second run of the nightly DAG is triggered, cleared
as a whole (the UI's "Clear" on a run, through the REST API) while a wait task is deferred in the
triggerer, and followed to its end. It must end ``success`` with every ticket answered, the emulator
must have received no cancel, and it must have created one batch per shard of the run, not more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from deploy.airflow_api import AirflowApi, CheckFailed, ti_key
from deploy.checks import NIGHTLY_PIPELINE_ID, NightlyTarget

WAIT_TASK = f"{NIGHTLY_PIPELINE_ID}.round_0.wait"
#: What the trigger's (and the sensor's) on_kill logs: the batch is left running.
ON_KILL_MARKER = "keeps running and a rerun re-attaches to it"


def wait_until_deferred(
    api: AirflowApi, dag_id: str, run_id: str, timeout: float, *, alive: Callable[[], None]
) -> str:
    """Poll the run until one of its round-0 wait tasks is ``deferred``; return its key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        for task_instance in api.task_instances(dag_id, run_id):
            if task_instance["task_id"] == WAIT_TASK and task_instance.get("state") == "deferred":
                return ti_key(task_instance)
        if api.dag_run(dag_id, run_id)["state"] in ("success", "failed"):
            raise CheckFailed(f"run {run_id!r} ended before any wait task was seen deferred")
        time.sleep(0.5)
    raise CheckFailed(f"no wait task of run {run_id!r} was deferred within {timeout:.0f} s")


def check_clear_while_deferred(
    api: AirflowApi,
    dag_id: str,
    nightly: NightlyTarget,
    *,
    alive: Callable[[], None],
    run_timeout: float,
) -> dict[str, Any]:
    """Trigger a run, clear it while a wait is deferred, follow it; fail unless nothing was canceled.

    :return: a summary of what was seen, for the report.
    """
    before = nightly.emulator_stats()
    run_id = api.trigger(dag_id, {"dry_run": False})["dag_run_id"]
    deferred = wait_until_deferred(api, dag_id, run_id, 240, alive=alive)
    api.clear_run(dag_id, run_id)
    observation = api.follow_run(dag_id, run_id, run_timeout, alive=alive)
    after = nightly.emulator_stats()
    folder = RunFolder.for_run(PurePosixPath(nightly.location.prefix), dag_id, run_id, NIGHTLY_PIPELINE_ID)
    body = nightly.s3.get_object(Bucket=nightly.location.bucket, Key=str(folder.manifest))["Body"].read()
    manifest = json.loads(body)
    waits = [ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == WAIT_TASK]
    canceled = after["cancels"] - before["cancels"]
    created = after["batches_created"] - before["batches_created"]
    batch_ids = manifest.get("batch_ids", [])
    problems = []
    if observation.run["state"] != "success":
        problems.append(f"the cleared run ended {observation.run['state']!r}")
    if canceled:
        problems.append(f"the emulator received {canceled} cancel(s) after the clear")
    if created != len(batch_ids) or len(set(batch_ids)) != len(batch_ids):
        problems.append(f"{created} batches were created for the run's batches {batch_ids}")
    if manifest.get("dispositions", {}).get("succeeded") != nightly.input_records:
        problems.append(f"dispositions {manifest.get('dispositions')} after the clear")
    if not any(ti["try_number"] > 1 for ti in waits):
        problems.append("no wait task ran again after the clear: the clear did not reach it")
    if problems:
        raise CheckFailed("clear while deferred: " + "; ".join(problems))
    # Where the cleared try's log says so, Airflow did call the trigger's on_kill (which cancels nothing).
    cleared_try_logs = [api.task_log(ti, ti["try_number"] - 1) for ti in waits if ti["try_number"] > 1]
    return {
        "run_id": run_id,
        "cleared_while_deferred": deferred,
        "canceled_by_the_clear": canceled,
        "batches_created": created,
        "wait_tries": sorted(ti["try_number"] for ti in waits),
        "on_kill_logged": any(ON_KILL_MARKER in log for log in cleared_try_logs),
        "succeeded": manifest["dispositions"]["succeeded"],
    }
