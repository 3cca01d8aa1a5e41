"""What a finished run must show, shared by the topology check and the compose check.

- :func:`check_run_succeeded`: the run and every task instance ended well, first try.
- :func:`check_deferred_and_resumed`: the wait tasks went to the triggerer and came back.
- :func:`check_nightly_outputs`: the labels file, manifest and report are in the object store, they
  add up, and the API emulator saw one batch per shard.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_claude_batch import get_provider_info
from airflow_claude_batch.core.run.layout import RunFolder
from deploy.airflow_api import AirflowApi, CheckFailed, RunObservation, ti_key

NIGHTLY_DAG_ID = "overnight_classification"
#: The nightly DAG's pipeline (its task group), the last segment of its run folder.
NIGHTLY_PIPELINE_ID = "classify_tickets"
NIGHTLY_LABELS = frozenset({"billing", "bug", "feature_request", "account", "shipping", "other"})
SMOKE_DAG_ID = "topology_smoke"
# What a task's log shows (lower-cased) when it deferred, the triggerer fired its trigger, and a worker
# ran the task again from the event.
DEFERRED_MARKER = "pausing task as deferred"
FIRED_MARKER = "trigger fired event"
RUN_MARKER = "::group::pre execute"


# The connection form's standard fields and the labels Airflow gives them.
STANDARD_LABELS = {
    "schema": "Schema",
    "port": "Port",
    "login": "Login",
    "host": "Host",
    "password": "Password",
}


@dataclass(frozen=True)
class PromisedForm:
    """What the ``claude_batch`` connection form must show and hide, read from ``get_provider_info``."""

    type_name: str
    standard_labels: tuple[str, ...]
    extra_labels: tuple[str, ...]
    hidden_labels: tuple[str, ...]

    @classmethod
    def from_provider_info(cls) -> PromisedForm:
        (connection_type,) = get_provider_info()["connection-types"]
        behaviour = connection_type["ui-field-behaviour"]
        relabeled = behaviour["relabeling"]
        # A hidden field's label must be absent, and so must the old label of a relabeled one.
        hidden = [STANDARD_LABELS[name] for name in (*behaviour["hidden-fields"], *relabeled)]
        return cls(
            type_name=connection_type["hook-name"],
            standard_labels=tuple(relabeled.values()),
            extra_labels=tuple(field["label"] for field in connection_type["conn-fields"].values()),
            hidden_labels=tuple(hidden),
        )


@dataclass(frozen=True)
class S3Location:
    """Where the run's storage root lives in the S3-compatible store.

    :param bucket: the bucket, e.g. ``claude-batch``.
    :param prefix: the key prefix of the storage root, e.g. ``nightly`` (no slashes at the ends).
    """

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def check_run_succeeded(observation: RunObservation, task_instances: list[dict[str, Any]]) -> None:
    """Fail unless the run succeeded and every task ended ``success`` or ``skipped`` on its first try."""
    run = observation.run
    failed = [ti_key(ti) for ti in task_instances if ti["state"] not in ("success", "skipped")]
    if run["state"] != "success" or failed:
        raise CheckFailed(f"run {run['dag_run_id']!r} ended {run['state']!r}; tasks not successful: {failed}")
    retried = [f"{ti_key(ti)} (try {ti['try_number']})" for ti in task_instances if ti["try_number"] > 1]
    if retried:
        raise CheckFailed(f"tasks needed retries in a healthy deployment: {retried}")


#: Lines no log of a healthy deployment may hold (Airflow's warning on a connection type with "_").
NOISE = ("Connection schemes (type: claude",)


def check_quiet_logs(folders: Iterable[Path]) -> int:
    """Fail when any process or task log below ``folders`` holds a line of :data:`NOISE`; return how
    many log files were read."""
    read, noisy = 0, {}
    for folder in folders:
        for path in sorted(folder.rglob("*.log")) + sorted(folder.rglob("*.json")):
            read += 1
            count = sum(path.read_text(errors="replace").count(pattern) for pattern in NOISE)
            if count:
                noisy[str(path)] = count
    if noisy:
        raise CheckFailed(f"the deployment's logs hold connection warnings: {noisy}")
    return read


def deferrable_tasks(dag_id: str, task_instances: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The task instances that must have waited in the triggerer and ran to success."""
    if dag_id == SMOKE_DAG_ID:
        wanted = [ti for ti in task_instances if ti["task_id"] == "wait"]
    else:
        wanted = [ti for ti in task_instances if ti["task_id"].endswith(".wait") and ti["state"] == "success"]
    if not wanted:
        raise CheckFailed(f"run of {dag_id!r} has no successful wait task; nothing was deferred")
    return wanted


def check_deferred_and_resumed(
    api: AirflowApi, dag_id: str, observation: RunObservation, task_instances: list[dict[str, Any]]
) -> list[str]:
    """Fail unless every wait task was seen ``deferred`` and its log shows the triggerer resuming it.

    :return: one line per wait task, for the report.
    """
    lines = []
    for ti in deferrable_tasks(dag_id, task_instances):
        key = ti_key(ti)
        states = observation.states_seen.get(key, set())
        log = api.task_log(ti, ti["try_number"]).lower()
        deferred_at = log.find(DEFERRED_MARKER)
        fired = FIRED_MARKER in log
        # The task ran on a worker again after it deferred: the resumption from the trigger's event.
        resumed = deferred_at >= 0 and log.find(RUN_MARKER, deferred_at) > deferred_at
        if not (deferred_at >= 0 and fired and resumed):
            raise CheckFailed(
                f"{key} was not deferred, fired by the triggerer and resumed on a worker (states seen: "
                f"{sorted(states)}; deferred: {deferred_at >= 0}, trigger fired: {fired}, resumed: "
                f"{resumed}); end of its log:\n{log[-1500:]}"
            )
        lines.append(
            f"{key}: deferred, trigger fired in the triggerer, resumed on a worker "
            f"(try {ti['try_number']}, states seen {sorted(states)})"
        )
    return lines


def run_day(run: Mapping[str, Any]) -> str:
    """The day a nightly run is named after: the end of its data interval, else when it was queued (UTC)."""
    moment = run.get("data_interval_end") or run["run_after"]
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return parsed.astimezone(timezone.utc).date().isoformat()


def _get_text(s3: Any, location: S3Location, key: str) -> str:
    try:
        return s3.get_object(Bucket=location.bucket, Key=key)["Body"].read().decode()
    except s3.exceptions.NoSuchKey as exc:
        raise CheckFailed(f"s3://{location.bucket}/{key} is missing") from exc


def check_nightly_outputs(
    s3: Any,
    location: S3Location,
    run: Mapping[str, Any],
    emulator_stats: Mapping[str, Any],
    input_records: int,
) -> dict[str, Any]:
    """Fail unless the nightly run's outputs are in the store and add up; return a summary.

    :param s3: a boto3 S3 client of the store.
    :param run: the finished dagRun document.
    :param emulator_stats: ``GET /_emulator/stats`` after the run (the emulator served only this run).
    :param input_records: how many tickets the run read.
    """
    folder = RunFolder.for_run(
        PurePosixPath(location.prefix), NIGHTLY_DAG_ID, run["dag_run_id"], NIGHTLY_PIPELINE_ID
    )
    manifest = json.loads(_get_text(s3, location, str(folder.manifest)))
    report_html = _get_text(s3, location, str(folder.report))
    labels_key = f"{location.prefix}/labels/{run_day(run)}.jsonl"
    labels = [json.loads(line) for line in _get_text(s3, location, labels_key).splitlines() if line.strip()]

    problems = []
    if not manifest.get("reconciled"):
        problems.append(f"manifest not reconciled: {manifest.get('notes')}")
    if manifest.get("input_records") != input_records:
        problems.append(f"manifest counts {manifest.get('input_records')} input records, not {input_records}")
    dispositions = manifest.get("dispositions", {})
    if sum(dispositions.values()) != input_records:
        problems.append(f"dispositions {dispositions} do not add up to {input_records}")
    if len(labels) != dispositions.get("succeeded"):
        problems.append(
            f"labels file has {len(labels)} rows, manifest says {dispositions.get('succeeded')} succeeded"
        )
    bad_rows = [row for row in labels if row.get("label") not in NIGHTLY_LABELS or "custom_id" not in row]
    if bad_rows:
        problems.append(f"{len(bad_rows)} label rows lack a custom_id or a known label, e.g. {bad_rows[0]}")
    shards = sum(round_ledger["shards"] for round_ledger in manifest.get("rounds", []))
    batch_ids = manifest.get("batch_ids", [])
    if len(set(batch_ids)) != len(batch_ids) or len(batch_ids) != shards:
        problems.append(f"{shards} shards but batch ids {batch_ids}")
    if emulator_stats.get("batches_created") != shards:
        problems.append(
            f"the emulator created {emulator_stats.get('batches_created')} batches for {shards} shards"
        )
    if "<svg" not in report_html:
        problems.append("report.html has no chart")
    if problems:
        raise CheckFailed("nightly outputs: " + "; ".join(problems))
    return {
        "manifest": f"s3://{location.bucket}/{folder.manifest}",
        "labels": f"s3://{location.bucket}/{labels_key}",
        "labels_rows": len(labels),
        "dispositions": dispositions,
        "shards": shards,
        "batches_created": emulator_stats.get("batches_created"),
        "polls": emulator_stats.get("retrieves"),
        "actual_cost_usd": manifest.get("money", {}).get("actual_usd"),
        "savings_usd": manifest.get("money", {}).get("savings_usd"),
    }


@dataclass(frozen=True)
class NightlyTarget:
    """Where a deployment under check keeps what the nightly run touches.

    :param s3: a boto3 S3 client of the object store.
    :param location: the storage root the DAG writes to.
    :param emulator_stats: returns the API emulator's counters.
    :param input_records: how many tickets the run reads.
    """

    s3: Any
    location: S3Location
    emulator_stats: Callable[[], dict[str, Any]]
    input_records: int


def run_and_check(
    api: AirflowApi,
    dag_id: str,
    *,
    nightly: NightlyTarget | None,
    alive: Callable[[], None],
    run_timeout: float,
    timings: Any,
) -> tuple[str, dict[str, Any]]:
    """Trigger ``dag_id`` through the REST API, follow the run, and check it and its outputs.

    The run is triggered for the DAG's next data interval while the DAG is still paused, and the DAG is
    unpaused after: the scheduler then finds that interval taken and starts no second run.

    :param nightly: where to check the nightly DAG's outputs; ``None`` for the smoke DAG.
    :param timings: a ``Timings`` whose phases are recorded.
    :return: the run's id and a summary of what was checked.
    """
    with timings.phase(f"DAG {dag_id} parsed"):
        dag = api.wait_for_dag(dag_id, 300, alive=alive)
    with timings.phase(f"run of {dag_id}"):
        conf = {"dry_run": False} if nightly is not None else {}
        run_id = api.trigger(dag_id, conf, logical_date=dag.get("next_dagrun_logical_date"))["dag_run_id"]
        api.set_paused(dag_id, False)
        observation = api.follow_run(dag_id, run_id, run_timeout, alive=alive)
    with timings.phase("checks"):
        others = [run["dag_run_id"] for run in api.dag_runs(dag_id) if run["dag_run_id"] != run_id]
        if others:
            raise CheckFailed(f"the scheduler started runs nobody asked for: {others}")
        task_instances = api.task_instances(dag_id, run_id)
        check_run_succeeded(observation, task_instances)
        summary: dict[str, Any] = {
            "run_id": run_id,
            "task_instances": len(task_instances),
            "deferred": check_deferred_and_resumed(api, dag_id, observation, task_instances),
        }
        if nightly is not None:
            summary["outputs"] = check_nightly_outputs(
                nightly.s3, nightly.location, observation.run, nightly.emulator_stats(), nightly.input_records
            )
    return run_id, summary
