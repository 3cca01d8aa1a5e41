"""A run of the pipeline's tasks, in order, in this process: build, rounds of submit / wait / fanout /
requeue, report.

The operators are the product's own, executed as a worker executes them (``execute(context)``), with
task retries as Airflow makes them: a task that raises is run again, unless it raised
``AirflowFailException``. A deferred wait hands its trigger, re-created from its serialized form as a
triggerer does, to an event loop, then resumes the sensor with the event. This costs a fraction of a
second per run, so the suite can run dozens of faulted runs; the sample DAGs' ``dag.test()`` runs are in
``test_secrets.py`` and ``tests/dags``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from airflow.sdk import ObjectStoragePath
from airflow.sdk.module_loading import import_string

from airflow_claude_batch import DEFAULT_PIPELINE_ID
from airflow_claude_batch.compat import AirflowFailException, TaskDeferred
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

DAG_ID = "reliability"
RUN_ID = "manual__2026-11-02T18:00:00+00:00"
MODEL = "claude-haiku-4-5"
OUTCOME_FILES = ("succeeded", "invalid_output", "errored", "expired", "canceled", "refused")
TOPICS = (
    "my invoice shows a double charge",
    "the app crashes when I open settings",
    "please add a dark mode",
    "I cannot login after the password reset",
    "my parcel tracking has not moved for a week",
)


def records(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    """Return ``count`` small support tickets with ids ``{prefix}-000``..."""
    return [
        {"id": f"{prefix}-{number:03d}", "text": f"Ticket {number}: {TOPICS[number % len(TOPICS)]}."}
        for number in range(count)
    ]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@dataclass
class TaskAttempts:
    """How often each task ran, and the errors that made it run again."""

    runs: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return len(self.errors)


@dataclass
class RunHarness:
    """One run of the pipeline's tasks against the Claude connection of the environment.

    :param storage: the local root of run folders.
    :param source: the records (a file URI) or a callable yielding them.
    :param max_rounds: rounds in all, the first included.
    :param deferrable: wait through the trigger (``True``) or by polling from the worker.
    :param poll_interval: seconds between polls.
    :param retries: retries of each task after a retryable error.
    :param retry_delay: seconds between a failed attempt and its retry.
    :param create_settle_margin: seconds past the client's timeout an unanswered create may still land.
    :param build_kwargs: more build parameters (``max_requests_per_shard``...).
    :param run_id: the run's id.
    :param before_task: called with the task's name before each attempt (to change the environment).
    :param storage_root: a storage URI in place of ``storage`` (``s3://...``).
    :param storage_conn_id: the connection for ``storage_root``.
    """

    storage: Path
    source: Any
    max_rounds: int = 1
    deferrable: bool = False
    poll_interval: float = 0.05
    retries: int = 4
    retry_delay: float = 0.0
    create_settle_margin: float = 2.0
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    run_id: str = RUN_ID
    before_task: Callable[[str], None] | None = None
    storage_root: str | None = None
    storage_conn_id: str | None = None
    attempts: TaskAttempts = field(default_factory=TaskAttempts)

    @property
    def storage_uri(self) -> str:
        return self.storage_root or f"file://{self.storage}"

    @property
    def run_dir(self) -> Path:
        return self.storage / DAG_ID / self.run_id / DEFAULT_PIPELINE_ID

    @property
    def folder(self) -> RunFolder:
        """The run folder, as the tasks build it."""
        return RunFolder(ObjectStoragePath(f"file://{self.run_dir}"))

    @property
    def output_path(self) -> Path:
        return self.storage / "out" / f"{DAG_ID}.jsonl"

    def context(self) -> dict[str, Any]:
        ti = SimpleNamespace(
            dag_id=DAG_ID,
            run_id=self.run_id,
            get_first_reschedule_date=lambda _: None,
            xcom_push=lambda **_: None,
        )
        return {"ti": ti, "run_id": self.run_id}

    # --- the tasks ---------------------------------------------------------------------------------

    def build(self) -> list[dict[str, Any]]:
        settings = {"model": MODEL, "max_tokens": 64, **self.build_kwargs}
        operator = ClaudeBatchBuildOperator(
            task_id="build",
            source=self.source,
            storage=self.storage_uri,
            storage_conn_id=self.storage_conn_id,
            **settings,
        )
        return self.task("build", lambda: operator.execute(self.context()))

    def submit(self, shard: dict[str, Any], conn_id: str | None = None) -> dict[str, Any]:
        operator = ClaudeBatchSubmitOperator(
            task_id="submit",
            **({"conn_id": conn_id} if conn_id else {}),
            shard=shard,
            storage_conn_id=self.storage_conn_id,
            recheck_interval=self.poll_interval,
            create_settle_margin=self.create_settle_margin,
        )
        return self.task("submit", lambda: operator.execute(self.context()))

    def wait(self, shard: dict[str, Any]) -> dict[str, Any]:
        return self.task("wait", lambda: self._wait_once(shard))

    def fanout(self, shard: dict[str, Any]) -> dict[str, Any]:
        operator = ClaudeBatchFanoutOperator(
            task_id="fanout", shard=shard, storage_conn_id=self.storage_conn_id
        )
        return self.task("fanout", lambda: operator.execute(self.context()))

    def requeue(self, shards: list[dict[str, Any]], round_index: int) -> list[dict[str, Any]]:
        operator = ClaudeBatchRequeueOperator(
            task_id="requeue", shards=shards, round_index=round_index, storage_conn_id=self.storage_conn_id
        )
        return self.task("requeue", lambda: operator.execute(self.context()))

    def report(self) -> dict[str, Any]:
        operator = ClaudeBatchReportOperator(
            task_id="report",
            storage=self.storage_uri,
            storage_conn_id=self.storage_conn_id,
            max_rounds=self.max_rounds,
            output_uri=f"{self.storage_root}/out/{DAG_ID}.jsonl"
            if self.storage_root
            else f"file://{self.output_path}",
        )
        return self.task("report", lambda: operator.execute(self.context()))

    def run_round(self, shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submit, wait for and fan out every shard of a round; return the fanout outputs."""
        submitted = [self.submit(shard) for shard in shards]
        ended = [self.wait(shard) for shard in submitted]
        return [self.fanout(shard) for shard in ended]

    def run(self) -> dict[str, Any]:
        """Run every task of the run in order; return the report's summary."""
        shards = self.build()
        for round_index in range(self.max_rounds):
            if not shards:
                break
            fanned_out = self.run_round(shards)
            if round_index < self.max_rounds - 1:
                shards = self.requeue(fanned_out, round_index)
        return self.report()

    # --- retries and the deferred wait ---------------------------------------------------------------

    def task(self, name: str, attempt: Callable[[], Any]) -> Any:
        """Run one task with Airflow's retry rule: retry on any error but ``AirflowFailException``."""
        for number in range(self.retries + 1):
            self.attempts.runs[name] += 1
            if self.before_task is not None:
                self.before_task(name)
            try:
                return attempt()
            except AirflowFailException:
                raise
            except Exception as exc:
                self.attempts.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                if number == self.retries:
                    raise
                time.sleep(self.retry_delay)
        raise AssertionError("unreachable")

    def _wait_once(self, shard: dict[str, Any]) -> dict[str, Any]:
        # Poke mode when not deferred: the harness runs one try to its end, as a worker slot would.
        sensor = ClaudeBatchSensor(
            task_id="wait",
            shard=shard,
            poll_interval=self.poll_interval,
            deferrable=self.deferrable,
            **({} if self.deferrable else {"mode": "poke"}),
        )
        try:
            return sensor.execute(self.context())
        except TaskDeferred as deferred:
            classpath, kwargs = deferred.trigger.serialize()
            trigger = import_string(classpath)(**kwargs)  # as a triggerer re-creates it
            event = asyncio.run(first_event(trigger))
            return getattr(sensor, deferred.method_name)(self.context(), event=event)


async def first_event(trigger: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Run a trigger until its first event; return the event's payload."""
    events = trigger.run()
    try:
        event = await asyncio.wait_for(anext(events), timeout)
    finally:
        await events.aclose()
    return event.payload


# --- what a run produced ------------------------------------------------------------------------------


def rows_by_round(run_dir: Path) -> dict[int, dict[str, tuple[str, dict[str, Any]]]]:
    """Return ``{round: {custom_id: (outcome, row)}}`` from the outcome files.

    :raises AssertionError: an id has two rows in one round (a line written twice).
    """
    rounds: dict[int, dict[str, tuple[str, dict[str, Any]]]] = {}
    for round_dir in sorted(run_dir.glob("round-*"), key=lambda path: int(path.name.split("-")[1])):
        seen = rounds.setdefault(int(round_dir.name.split("-")[1]), {})
        for shard_dir in sorted(path for path in round_dir.glob("shard-*") if path.is_dir()):
            for outcome in OUTCOME_FILES:
                path = shard_dir / f"{outcome}.jsonl"
                if not path.exists():
                    continue
                for row in read_jsonl(path):
                    custom_id = row["custom_id"]
                    assert custom_id not in seen, f"{custom_id} has two rows in {round_dir.name}: {path}"
                    seen[custom_id] = (outcome, row)
    return rounds


def final_outcomes(run_dir: Path) -> dict[str, tuple[str, Any]]:
    """Return each request's last outcome over the rounds, with its answer text when it has one."""
    final: dict[str, tuple[str, Any]] = {}
    for rows in rows_by_round(run_dir).values():
        for custom_id, (outcome, row) in rows.items():
            final[custom_id] = (outcome, row.get("text"))
    return final


def comparable(harness: RunHarness, summary: dict[str, Any]) -> dict[str, Any]:
    """What two runs of the same input must agree on: dispositions, outcomes, answers, flat output."""
    flat = sorted(read_jsonl(harness.output_path), key=lambda row: row["custom_id"])
    return {
        "input_records": summary["input_records"],
        "dispositions": summary["dispositions"],
        "reconciled": summary["reconciled"],
        "final": final_outcomes(harness.run_dir),
        "flat_output": flat,
    }


def lost_and_doubled(run_dir: Path, input_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """Return the input ids that no final file accounts for, and those accounted for twice.

    The final files are the succeeded and invalid-output rows of every round, the run's dead-letter
    file and its pending file: every record must be in exactly one of them.
    """
    places: Counter[str] = Counter()
    for rows in rows_by_round(run_dir).values():
        for custom_id, (outcome, _) in rows.items():
            if outcome in ("succeeded", "invalid_output"):
                places[custom_id] += 1
    for name in ("dead-letter.jsonl", "pending.jsonl"):
        path = run_dir / name
        if path.exists():
            places.update(row["custom_id"] for row in read_jsonl(path))
    expected = set(input_ids)
    return expected - set(places), {custom_id for custom_id, count in places.items() if count > 1}
