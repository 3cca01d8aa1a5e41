"""Re-sweeping a day after late data, as the README says, on a real scheduler.

Run by the topology check after the nightly run: a backfill of one past day labels a small file of
tickets (a backfill, so the run has the logical date a scheduled run of that day has); late tickets are
then appended to that file and the day's run is reprocessed with ``on_input_change: add_new`` through
the REST API's backfill (what ``airflow backfill create ... --reprocess-behavior completed
--dag-run-conf ...`` sends). The reprocessed run must end ``success``
with every ticket answered, and must have created exactly one more batch, holding only the late tickets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from deploy.airflow_api import AirflowApi, CheckFailed
from deploy.checks import NIGHTLY_PIPELINE_ID, NightlyTarget

#: The day re-swept: after the DAG's start date, before today, one the nightly run and the clear check
#: do not use.
DAY = "2026-11-15"
FIRST, LATE = 40, 10


def backfill_day(
    api: AirflowApi, dag_id: str, day: str, conf: dict[str, Any], *, reprocess: str = "none"
) -> dict[str, Any]:
    """Create a backfill of ``day`` with ``conf`` (reprocessing its completed run when ``reprocess`` is
    ``"completed"``); return the answer."""
    body = {
        "dag_id": dag_id,
        "from_date": f"{day}T00:00:00Z",
        "to_date": f"{day}T23:59:59Z",
        "reprocess_behavior": reprocess,
        "max_active_runs": 1,
        "dag_run_conf": conf,
    }
    response = api.request("POST", "/api/v2/backfills", json=body)
    if response.status_code not in (200, 201):
        raise CheckFailed(f"creating the backfill answered {response.status_code}: {response.text[:500]}")
    return response.json()


def wait_until_completed(
    api: AirflowApi, backfill_id: Any, timeout: float, *, alive: Callable[[], None]
) -> None:
    """Wait for the scheduler to mark the backfill completed (a DAG has one running backfill at most)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        if api.get_json(f"/api/v2/backfills/{backfill_id}").get("completed_at"):
            return
        time.sleep(1.0)
    raise CheckFailed(f"backfill {backfill_id} was not completed within {timeout:.0f} s")


def day_run_id(api: AirflowApi, dag_id: str, day: str) -> str:
    """The id of the backfill run named for ``day``'s cutoff."""
    for run in api.dag_runs(dag_id):
        if run["dag_run_id"].startswith(f"backfill__{day}"):
            return run["dag_run_id"]
    raise CheckFailed(
        f"the backfill made no run for {day}: runs {[r['dag_run_id'] for r in api.dag_runs(dag_id)]}"
    )


def check_resweep_after_late_data(
    api: AirflowApi,
    dag_id: str,
    nightly: NightlyTarget,
    *,
    tickets: Path,
    workdir: Path,
    alive: Callable[[], None],
    run_timeout: float,
) -> dict[str, Any]:
    """Label a day, add late tickets, reprocess the day with ``add_new``; fail unless only the late
    tickets were sent, in one more batch, and every ticket is answered.

    :param tickets: a JSONL file of tickets to take the day's from.
    :param workdir: a folder every worker reads, for the day's input file.
    :return: a summary of what was seen, for the report.
    """
    lines = tickets.read_text().splitlines()[: FIRST + LATE]
    day_input = workdir / f"tickets-{DAY}.jsonl"
    day_input.write_text("\n".join(lines[:FIRST]) + "\n")
    conf = {"dry_run": False, "input_path": f"file://{day_input}"}
    first_backfill = backfill_day(api, dag_id, DAY, conf)
    run_id = day_run_id(api, dag_id, DAY)
    first = api.follow_run(dag_id, run_id, run_timeout, alive=alive)
    if first.run["state"] != "success":
        raise CheckFailed(f"re-sweep: the day's first run ended {first.run['state']!r}")
    wait_until_completed(api, first_backfill["id"], 120, alive=alive)

    before = nightly.emulator_stats()
    day_input.write_text("\n".join(lines) + "\n")  # the late tickets arrive
    backfill = backfill_day(api, dag_id, DAY, {**conf, "on_input_change": "add_new"}, reprocess="completed")
    observation = api.follow_run(dag_id, run_id, run_timeout, alive=alive)
    after = nightly.emulator_stats()

    folder = RunFolder.for_run(PurePosixPath(nightly.location.prefix), dag_id, run_id, NIGHTLY_PIPELINE_ID)
    manifest = json.loads(_read(nightly, folder.manifest))
    shards = json.loads(_read(nightly, folder.round_dir(0) / "shards.json"))
    created = after["batches_created"] - before["batches_created"]
    added = [shard["request_count"] for shard in shards[1:]]
    problems = []
    if observation.run["state"] != "success":
        problems.append(f"the reprocessed run ended {observation.run['state']!r}")
    if created != 1 or added != [LATE]:
        problems.append(f"{created} batch(es) created for the late tickets; shards added: {added}")
    if manifest.get("dispositions", {}).get("succeeded") != FIRST + LATE:
        problems.append(f"dispositions {manifest.get('dispositions')} after the re-sweep")
    if problems:
        raise CheckFailed("re-sweep after late data: " + "; ".join(problems))
    return {
        "run_id": run_id,
        "backfill_id": backfill.get("id"),
        "batches_created": created,
        "late_shard_requests": added,
        "succeeded": manifest["dispositions"]["succeeded"],
    }


def _read(nightly: NightlyTarget, key: PurePosixPath) -> bytes:
    return nightly.s3.get_object(Bucket=nightly.location.bucket, Key=str(key))["Body"].read()
