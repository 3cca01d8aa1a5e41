"""``make demo``: the nightly classification DAG, end to end on this machine, against the emulator.

No API key, no network and no setup: the demo keeps an Airflow home of its own (SQLite) under
``./.demo/airflow``, starts the local emulator of the Message Batches API on a free loopback port,
points the ``claude_batch_default`` connection at it, runs ``overnight_classification`` for one day over
the bundled sample of support tickets with ``dag.test()``, stops the emulator and prints what the run
did and cost. Airflow's own output goes to ``./.demo/demo.log``.

    python -m demo                           # the bundled 3,000 tickets
    python -m demo --expire-fraction 0.05    # a busy night: 5 % expire, requeued

Airflow runs in child processes, so its configuration (read at import) is the demo's alone. The demo
runs the repository's ``dags/`` and their data, so it lives beside them, not in the package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_claude_batch.core.run.storage import iter_jsonl, read_json

DAG_ID = "overnight_classification"
#: The nightly DAG's pipeline (task group) id: the last segment of its run folder.
PIPELINE_ID = "classify_tickets"
DAG_FILE = "overnight_classification.py"
DEFAULT_DAY = date(2026, 11, 2)
# The nightly DAG's cutoff hour: the run for day D is the one at 18:00 on D.
CUTOFF_HOUR = 18
DEMO_POLL_INTERVAL = 1.0
REPO_ROOT = Path(__file__).resolve().parent.parent
# Inherited settings that would point the demo at another Airflow or another storage.
_FOREIGN_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "CLAUDE_BATCH_")


class DemoError(Exception):
    """The demo could not run; the message says what to do."""


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its files.

    :param workdir: the demo's folder (``./.demo`` by default).
    :param dags_folder: the repository's ``dags/`` folder.
    """

    workdir: Path
    dags_folder: Path = REPO_ROOT / "dags"

    @property
    def airflow_home(self) -> Path:
        return self.workdir / "airflow"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @property
    def log(self) -> Path:
        return self.workdir / "demo.log"


@dataclass(frozen=True)
class DemoResult:
    """What the demo run produced, read back from its files.

    :param day: the day the run labelled.
    :param run_id: the DAG run's id.
    :param manifest_path: the run's ``manifest.json``.
    :param manifest: its content.
    :param labels_path: the flat labels file the report wrote.
    :param label_counts: labelled tickets per label, counted in that file.
    :param log_path: Airflow's output.
    """

    day: date
    run_id: str
    manifest_path: Path
    manifest: Mapping[str, Any]
    labels_path: Path
    label_counts: Mapping[str, int]
    log_path: Path


def run_demo(
    paths: DemoPaths,
    *,
    day: date = DEFAULT_DAY,
    tickets: Path | None = None,
    expire_fraction: float = 0.0,
    poll_interval: float = DEMO_POLL_INTERVAL,
) -> DemoResult:
    """Run the nightly DAG for ``day`` against a fresh emulator and return what it produced.

    :param paths: the demo's folders.
    :param day: the run's day (its 18:00 cutoff).
    :param tickets: a tickets file to label instead of the bundled sample.
    :param expire_fraction: fraction of the first batch's requests the emulator lets expire, to show
        a requeue round recovering them.
    :param poll_interval: seconds between polls of a batch.
    :raises DemoError: when Airflow or the run fails; the log file has the details.
    """
    from airflow_claude_batch.emulator.config import EmulatorConfig
    from airflow_claude_batch.emulator.server import EmulatorServer

    if not (paths.dags_folder / DAG_FILE).exists():
        raise DemoError(
            f"{paths.dags_folder / DAG_FILE} is missing: run the demo from a clone of the repository"
        )
    paths.workdir.mkdir(parents=True, exist_ok=True)
    paths.log.write_text("")
    _migrate_once(paths)
    api_key = f"demo-{secrets.token_hex(8)}"
    with EmulatorServer(EmulatorConfig(api_key=api_key)) as server:
        if expire_fraction > 0:
            server_faults = {"expire_next": {"fraction": expire_fraction, "batches": 1}}
            _post_json(f"{server.base_url}/_emulator/faults", server_faults)
        env = _child_env(paths, server.base_url, api_key, tickets, poll_interval)
        outcome = _run_child(paths, env, day)
    if outcome["state"] != "success":
        failed = ", ".join(outcome.get("failed_tasks") or []) or "unknown"
        raise DemoError(
            f"the run {outcome['run_id']} ended {outcome['state']} (failed: {failed}); see {paths.log}"
        )
    return _read_result(paths, day, outcome)


def _migrate_once(paths: DemoPaths) -> None:
    """Create the demo's metadata database, once per Airflow version."""
    marker = paths.airflow_home / ".migrated"
    wanted = version("apache-airflow-core")
    if marker.exists() and marker.read_text() == wanted and (paths.airflow_home / "airflow.db").exists():
        return
    paths.airflow_home.mkdir(parents=True, exist_ok=True)
    env = _child_env(paths, base_url=None, api_key=None, tickets=None, poll_interval=DEMO_POLL_INTERVAL)
    _logged_run([sys.executable, "-m", "airflow", "db", "migrate"], env, paths.log, what="airflow db migrate")
    marker.write_text(wanted)


def _child_env(
    paths: DemoPaths,
    base_url: str | None,
    api_key: str | None,
    tickets: Path | None,
    poll_interval: float,
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(_FOREIGN_ENV_PREFIXES)}
    env.update(
        {
            "AIRFLOW_HOME": str(paths.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"airflow_claude_batch\..*",
            "AIRFLOW_VAR_CLAUDE_BATCH_STORAGE": paths.storage.resolve().as_uri(),
            "CLAUDE_BATCH_POLL_INTERVAL": str(poll_interval),
            # the child imports this module (child_main) wherever it was started from
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    if base_url is not None and api_key is not None:
        connection = {"conn_type": "claude-batch", "host": base_url, "password": api_key}
        env["AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT"] = json.dumps(connection)
        # No CLAUDE_BATCH_BATCH_RPM_LIMIT: the emulator enforces the API's tier-1 limits (50 batch calls
        # a minute), and the product's default pace is the same tier's.
    if tickets is not None:
        env["AIRFLOW_VAR_CLAUDE_BATCH_TICKETS"] = tickets.resolve().as_uri()
    return env


def _run_child(paths: DemoPaths, env: dict[str, str], day: date) -> dict[str, Any]:
    """Run the DAG in a child process; return its ``run_id``, ``state`` and failed tasks."""
    result_file = paths.workdir / "last-run.json"
    result_file.unlink(missing_ok=True)
    logical_date = datetime(day.year, day.month, day.day, CUTOFF_HOUR, tzinfo=timezone.utc)
    code = "import sys; from demo.nightly import child_main; sys.exit(child_main(sys.argv[1:]))"
    command = [
        sys.executable,
        "-c",
        code,
        str(paths.dags_folder / DAG_FILE),
        DAG_ID,
        logical_date.isoformat(),
        str(result_file),
    ]
    _logged_run(command, env, paths.log, what=f"the {DAG_ID} run", check=False)
    outcome = read_json(result_file)
    if not isinstance(outcome, dict):
        raise DemoError(f"the {DAG_ID} run stopped before it finished; see {paths.log}")
    return outcome


def _logged_run(command: list[str], env: dict[str, str], log: Path, *, what: str, check: bool = True) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command[:4])} ...\n")
        out.flush()
        completed = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if check and completed.returncode != 0:
        raise DemoError(f"{what} failed (exit {completed.returncode}); see {log}")


def _post_json(url: str, payload: Mapping[str, Any]) -> None:
    import httpx

    httpx.post(url, json=dict(payload), timeout=10.0).raise_for_status()


def _read_result(paths: DemoPaths, day: date, outcome: Mapping[str, Any]) -> DemoResult:
    run_folder = paths.storage / DAG_ID / outcome["run_id"] / PIPELINE_ID
    manifest_path = run_folder / "manifest.json"
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise DemoError(f"the run finished but {manifest_path} is missing; see {paths.log}")
    labels_path = _local_path(_output_uri(manifest))
    label_counts = Counter(row.get("label", "?") for row in iter_jsonl(labels_path))
    return DemoResult(
        day=day,
        run_id=outcome["run_id"],
        manifest_path=manifest_path,
        manifest=manifest,
        labels_path=labels_path,
        label_counts=dict(label_counts.most_common()),
        log_path=paths.log,
    )


def _output_uri(manifest: Mapping[str, Any]) -> str:
    uri = manifest.get("files", {}).get("output")
    if not uri:
        raise DemoError("the manifest names no output file: the report was run without output_uri")
    return str(uri)


def _local_path(uri: str) -> Path:
    parts = urlsplit(uri)
    return Path(parts.path) if parts.scheme in ("", "file", "local") else Path(uri)


def format_summary(result: DemoResult) -> str:
    """Return the few lines a person reads after the demo: counts, money and where the files are."""
    manifest = result.manifest
    done = manifest["dispositions"]
    money = manifest["money"]
    rounds = manifest["rounds"]
    batches = len(manifest["batch_ids"])
    requeued = sum(entry["requeued"] for entry in rounds)
    labels = ", ".join(f"{label} {count:,}" for label, count in result.label_counts.items())
    savings = f"${money['savings_usd']:.4f} saved"
    if money.get("savings_pct") is not None:
        savings += f" ({money['savings_pct']:.1f} %)"
    lines = [
        f"{DAG_ID} for {result.day.isoformat()} against the local emulator: done",
        f"  records   {manifest['input_records']:,} tickets: {done['succeeded']:,} labelled, "
        f"{done['invalid_output']:,} invalid output, {done['dead_lettered']:,} dead-lettered, "
        f"{done['pending']:,} pending",
        f"  labels    {labels}",
        f"  batches   {_count(batches, 'batch', 'batches')} in {_count(len(rounds), 'round', 'rounds')}, "
        f"{_count(requeued, 'request', 'requests')} requeued",
        f"  cost      ${money['actual_usd']:.4f} at batch prices, "
        f"${money['synchronous_equivalent_usd']:.4f} synchronous: {savings}",
        f"  estimate  {_estimate(manifest)}",
        f"  output    {result.labels_path}",
        f"  manifest  {result.manifest_path}",
        f"  report    {result.manifest_path.parent / manifest['files']['report']}",
        f"  log       {result.log_path}",
    ]
    return "\n".join(lines)


def _estimate(manifest: dict[str, Any]) -> str:
    money = manifest["money"]
    basis = (manifest.get("estimate") or {}).get("basis") or {}
    source = {
        "history": f"learned from {basis.get('runs')} earlier run(s)",
        "user": "from expected_output_tokens",
        "default": "no earlier run: defaults",
    }.get(str(basis.get("kind")), "unknown basis")
    hit_rate = manifest.get("cache_hit_rate")
    hits = "n/a" if hit_rate is None else f"{100 * hit_rate:.1f} %"
    return (
        f"${money['estimated_expected_usd'] or 0:.4f} expected ({source}), "
        f"${money['estimated_upper_usd'] or 0:.4f} upper bound; cache hit rate {hits}"
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number:,} {one if number == 1 else many}"


def child_main(argv: Sequence[str]) -> int:
    """Run one DAG with ``dag.test()`` (in the demo's child process) and write how it ended as JSON.

    :param argv: the DAG file, the dag_id, the logical date (ISO 8601) and the result file.
    """
    dag_file, dag_id, logical_date_text, result_file = argv
    spec = importlib.util.spec_from_file_location(f"demo_dag_{dag_id}", dag_file)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {dag_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, "dag", None)
    if getattr(dag, "dag_id", None) != dag_id:
        raise DemoError(f"{dag_file} defines no DAG {dag_id!r} in its variable 'dag'")
    dag_run = dag.test(logical_date=datetime.fromisoformat(logical_date_text))
    failed = {ti.task_id for ti in dag_run.get_task_instances() if ti.state in ("failed", "upstream_failed")}
    outcome = {"run_id": dag_run.run_id, "state": str(dag_run.state), "failed_tasks": sorted(failed)}
    Path(result_file).write_text(json.dumps(outcome, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print its summary; return the process's exit code."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="demo folder (default ./.demo)")
    parser.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY, help="YYYY-MM-DD")
    parser.add_argument("--tickets", type=Path, help="a JSONL file of tickets (id, text) to label")
    parser.add_argument(
        "--expire-fraction", type=float, default=0.0, help="let this fraction of the first batch expire"
    )
    args = parser.parse_args(argv)
    paths = DemoPaths(workdir=args.workdir.resolve())
    print(f"Running {DAG_ID} against the local emulator (Airflow's output: {paths.log}) ...", flush=True)
    try:
        result = run_demo(paths, day=args.day, tickets=args.tickets, expire_fraction=args.expire_fraction)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
