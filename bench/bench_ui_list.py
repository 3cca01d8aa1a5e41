"""The "Claude batches" page with history: 1,000 pipeline runs listed by Airflow's API server.

Run: ``.venv/bin/python -m bench ui_list [--runs 1000] [--dags 10] [--repeats 5]``

A fresh Airflow home on SQLite (migrated once) gets ``--runs`` finished pipeline runs spread over
``--dags`` DAGs and nights, as Airflow records them: a DAG run, the report task instance, its XCom
``return_value`` and its rendered ``storage`` field, and a manifest on local storage for each (the
shape the ledger writes, about 6 KB). Airflow's API server app (``create_app``, the simple auth
manager, an admin's JWT) then answers ``GET /claude-batches/api/runs?limit=1000`` and the page:

- the first request reads every manifest (cold: nothing cached yet);
- the next ``--repeats`` requests read none (the summaries are kept by location and version); their
  median is the figure the issue asks to be under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

OPERATOR = "ClaudeBatchReportOperator"
START = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--dags", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="acb-bench-ui-"))
    # A passwords file of our own: the simple auth manager would otherwise generate one and print it.
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": os.urandom(12).hex()}))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__API_AUTH__JWT_SECRET": "bench-secret-" + "x" * 64,
        }
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    began = time.perf_counter()
    record_runs(home / "runs", args.runs, args.dags)
    print(f"recorded {args.runs} runs in {args.dags} DAGs in {time.perf_counter() - began:.1f} s")
    measure(args.runs, args.repeats)


def record_runs(storage: Path, runs: int, dags: int) -> None:
    """Insert what Airflow records of ``runs`` finished pipeline runs, and write their manifests."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    dag_ids = [f"nightly_{i:02d}" for i in range(dags)]
    with create_session() as session:
        session.execute(insert(DagBundleModel.__table__), [{"name": "bench"}])
        session.execute(
            insert(DagModel.__table__),
            [
                {
                    "dag_id": dag_id,
                    "bundle_name": "bench",
                    "max_active_tasks": 16,
                    "max_consecutive_failed_dag_runs": 0,
                    "has_task_concurrency_limits": False,
                    "is_stale": False,
                    "is_paused": False,
                }
                for dag_id in dag_ids
            ],
        )
        plans = []
        for index in range(runs):
            dag_id = dag_ids[index % dags]
            when = START + timedelta(days=index // dags)
            plans.append((dag_id, f"scheduled__{when.isoformat()}", when))
        session.execute(
            insert(DagRun.__table__),
            [
                {
                    "dag_id": d,
                    "run_id": r,
                    "run_type": "scheduled",
                    "state": "success",
                    "run_after": w,
                    "logical_date": w,
                }
                for d, r, w in plans
            ],
        )
        ids = {(d, r): i for i, d, r in session.execute(select(DagRun.id, DagRun.dag_id, DagRun.run_id))}
        task_id = "claude_batch.report"
        session.execute(
            insert(TaskInstance.__table__),
            [
                {
                    "dag_id": d,
                    "run_id": r,
                    "task_id": task_id,
                    "map_index": -1,
                    "pool": "default_pool",
                    "state": "success",
                    "operator": OPERATOR,
                    "try_number": 1,
                    "end_date": w + timedelta(hours=1),
                }
                for d, r, w in plans
            ],
        )
        summaries = [write_manifest(storage, d, r, n) for n, (d, r, _w) in enumerate(plans)]
        session.execute(
            insert(XComModel.__table__),
            [
                {
                    "dag_run_id": ids[(d, r)],
                    "task_id": task_id,
                    "map_index": -1,
                    "key": "return_value",
                    "dag_id": d,
                    "run_id": r,
                    "value": json.dumps(summary),
                    "timestamp": w + timedelta(hours=1),
                }
                for (d, r, w), summary in zip(plans, summaries, strict=True)
            ],
        )
        session.execute(
            insert(RenderedTaskInstanceFields.__table__),
            [
                {
                    "dag_id": d,
                    "run_id": r,
                    "task_id": task_id,
                    "map_index": -1,
                    "rendered_fields": {"storage": f"file://{storage}", "storage_conn_id": None},
                }
                for d, r, _w in plans
            ],
        )


def write_manifest(storage: Path, dag_id: str, run_id: str, n: int) -> dict[str, Any]:
    """A manifest of the ledger's shape (two rounds, prices frozen), and the report's summary of it."""
    folder = storage / dag_id / run_id / "claude_batch"
    folder.mkdir(parents=True)
    records = 10_000 + n
    dispositions = {
        "succeeded": records - 40,
        "invalid_output": 20,
        "refused": 2,
        "dead_lettered": 8,
        "pending": 6,
        "rejected": 4,
    }
    money = {
        "estimated_upper_usd": 9.0,
        "estimated_expected_usd": 4.5,
        "batch_usd": 4.2,
        "sync_retry_usd": 0.1,
        "actual_usd": 4.3,
        "synchronous_equivalent_usd": 8.6,
        "savings_usd": 4.3,
        "savings_pct": 50.0,
        "sync_retry_unknown_usd": 0.0,
        "actual_upper_usd": 4.3,
    }
    round_ = {
        "round": 0,
        "shards": 1,
        "requests": records,
        "batch_ids": [f"msgbatch_{n:06d}_0"],
        "outcomes": {"succeeded": records - 40, "errored": 40},
        "requeued": 30,
        "dead_lettered": 8,
        "pending": 0,
        "sync_retry": {},
        "tokens": {"input": 4_000_000, "output": 300_000},
        "batch_usd": 4.0,
        "sync_retry_usd": 0.0,
        "requeue_ran": True,
        "unfinished_shards": 0,
    }
    manifest = {
        "run_uri": f"file://{folder}",
        "input_records": records,
        "max_rounds": 2,
        "rounds": [round_, {**round_, "round": 1, "batch_ids": [f"msgbatch_{n:06d}_1"]}],
        "outcomes": round_["outcomes"],
        "dispositions": dispositions,
        "reconciled": True,
        "notes": [],
        "warnings": [],
        "batch_ids": [f"msgbatch_{n:06d}_0", f"msgbatch_{n:06d}_1"],
        "tokens": round_["tokens"],
        "tokens_by_model": {"claude-haiku-4-5": round_["tokens"]},
        "money": money,
        "files": {"manifest": "manifest.json", "report": "report.html"},
        "price_sources": ["shipped prices.json"],
        "estimate": {"records": records, "method": "count_tokens sample", "warnings": []},
        "prices": {"models": {f"model-{i}": {"input": 1.0, "output": 5.0} for i in range(40)}},
        "pipeline": {"dag_id": dag_id, "group_id": "claude_batch"},
        "canceled": None,
        "schema_version": 2,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return {
        "run_uri": f"file://{folder}",
        "input_records": records,
        "dispositions": dispositions,
        "batches": 2,
        "actual_cost_usd": 4.3,
        "files": {"manifest": f"file://{folder}/manifest.json", "report": f"file://{folder}/report.html"},
    }


def measure(runs: int, repeats: int) -> None:
    """Time the JSON list and the page through Airflow's API server app."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airflow_claude_batch.ui import run_rows

    app = create_app(apps="core")
    with TestClient(app) as client:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        headers = {"Authorization": f"Bearer {token}"}
        params = {"limit": min(runs, 1000)}

        def timed(path: str) -> tuple[float, Any]:
            began = time.perf_counter()
            answer = client.get(path, params=params, headers=headers)
            answer.raise_for_status()
            return time.perf_counter() - began, answer

        cold, answer = timed("/claude-batches/api/runs")
        listed = answer.json()
        assert len(listed["runs"]) == params["limit"], listed.get("total_entries")
        assert all(row["source"] == "manifest" for row in listed["runs"])
        reads = run_rows.CACHE.reads
        warm = [timed("/claude-batches/api/runs")[0] for _ in range(repeats)]
        page = [timed("/claude-batches/")[0] for _ in range(repeats)]
        assert run_rows.CACHE.reads == reads, "a warm request read a manifest"
    load = os.getloadavg()[0]
    print(f"rows listed: {len(listed['runs'])} of {listed['total_entries']}; manifests read: {reads}")
    print(f"JSON, cold (every manifest read): {cold:.3f} s")
    print(f"JSON, warm: median {statistics.median(warm):.3f} s, max {max(warm):.3f} s ({repeats} requests)")
    print(f"page, warm: median {statistics.median(page):.3f} s, max {max(page):.3f} s")
    print(f"load average {load:.1f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
