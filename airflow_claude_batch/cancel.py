"""Cancel the batches of one DAG run on purpose: ``python -m airflow_claude_batch.cancel``.

Clearing, killing or marking a task never cancels its batch (a rerun re-attaches to it instead), so
this command is the one way to stop a run's batches. It reads the state files of the run's folder,
``{storage}/{dag_id}/{run_id}/[{pipeline_id}/]``, and cancels exactly the batches they name: nothing
of another run, another pipeline, or another DAG sharing the storage root or the workspace.

::

    python -m airflow_claude_batch.cancel --storage s3://bucket/claude-runs \\
        --dag-id overnight_ticket_classification --run-id scheduled__2026-01-31T18:00:00+00:00 \\
        [--pipeline-id classify] [--conn-id claude_batch_default] [--storage-conn-id aws_default] [--list]

Run it where the deployment's connections are readable (a worker or scheduler host, or with the
connections in ``AIRFLOW_CONN_*`` variables). Requests already processed are billed and stay in the
batches' results. The run then finishes by itself: its waits see the batches end, and its requeue
holds the canceled requests of a batch cancelled on purpose (listed in ``pending.jsonl``) instead of
sending them again.
"""

from __future__ import annotations

import argparse
import sys

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.batch.cancellation import (
    RecordedBatch,
    cancel_recorded,
    recorded_batches,
    run_root,
)
from airflow_claude_batch.exceptions import ClaudeBatchError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_claude_batch.cancel",
        description="Cancel exactly the batches one DAG run (or one pipeline of it) recorded.",
    )
    parser.add_argument("--storage", required=True, help="the pipelines' storage root URI")
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--pipeline-id", default=None, help="only this pipeline (its task group id)")
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="the Claude connection to cancel through")
    parser.add_argument("--storage-conn-id", default=None, help="the connection for --storage")
    parser.add_argument("--list", action="store_true", help="list the recorded batches, cancel nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Cancel (or list) the run's recorded batches; return 0 when every one is done with, else 1."""
    args = parse_args(argv)
    from airflow.sdk import ObjectStoragePath

    try:
        storage = ObjectStoragePath(args.storage, conn_id=args.storage_conn_id)
        root = run_root(storage, args.dag_id, args.run_id)
        batches = recorded_batches(root, args.pipeline_id)
    except ClaudeBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not batches:
        where = f"{root}/{args.pipeline_id}" if args.pipeline_id else str(root)
        print(f"no submitted shard is recorded under {where}")
        return 0
    if args.list:
        for batch in batches:
            print(_line(batch, batch.batch_id or "-", batch.status))
        return 0
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook(conn_id=args.conn_id)
    ok = True
    for outcome in cancel_recorded(batches, hook.cancel_batch):
        ok = ok and outcome.ok
        print(_line(outcome.batch, outcome.batch.batch_id or "-", outcome.result))
    return 0 if ok else 1


def _line(batch: RecordedBatch, batch_id: str, result: str) -> str:
    return f"{batch.pipeline_id} round {batch.round_index} shard {batch.shard_index}: {batch_id}: {result}"


if __name__ == "__main__":
    sys.exit(main())
