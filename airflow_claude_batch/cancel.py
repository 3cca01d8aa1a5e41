"""Cancel one DAG run (or one pipeline of it) on purpose: ``python -m airflow_claude_batch.cancel``.

Clearing, killing or marking a task never cancels its batch (a rerun re-attaches to it instead), so
this command is the one way to stop a run. It first writes the run's cancel record (``cancel.json`` in
each pipeline's run folder, whole or not at all): from then on the run creates no batch (a shard
waiting for capacity after a 429 ends without creating), builds no requeue round and sends no
synchronous retry. Then it cancels exactly the batches the run folder's state files name: nothing of
another run, another pipeline, or another DAG sharing the storage root or the workspace. It prints
what it stopped: the batches cancelled, the shards stopped before their create, the rounds that will
not be built.

::

    python -m airflow_claude_batch.cancel --storage s3://bucket/claude-runs \\
        --dag-id overnight_ticket_classification --run-id scheduled__2026-01-31T18:00:00+00:00 \\
        [--pipeline-id classify] [--conn-id claude_batch_default] [--storage-conn-id aws_default] \\
        [--list | --resume]

Run it where the deployment's connections are readable (a worker or scheduler host, or with the
connections in ``AIRFLOW_CONN_*`` variables). Requests already processed are billed and stay in the
batches' results. The run then finishes by itself: its waits see the batches end, and its report lists
every record left unanswered in ``pending.jsonl`` with the reason ``canceled``.

To resume a canceled run on purpose, ``--resume`` removes the cancel record (nothing else); then clear
the run's tasks (from its first unfinished round's submit, or the whole pipeline group). Shards not
created yet are created then; requests a requeue held as canceled stay pending in this run (a new run
of the interval with ``on_input_change="add_new"`` sends them).
"""

from __future__ import annotations

import argparse
import sys

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.core.run import RunFolder, StoragePath, remove_cancel, write_cancel
from airflow_claude_batch.core.submit import (
    RecordedBatch,
    cancel_recorded,
    pipeline_ids,
    recorded_batches,
    run_root,
    stopped_round,
    stopped_shards,
)
from airflow_claude_batch.exceptions import ClaudeBatchError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_claude_batch.cancel",
        description="Cancel one DAG run (or one pipeline of it): record the cancel, then cancel its batches.",
    )
    parser.add_argument("--storage", required=True, help="the pipelines' storage root URI")
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--pipeline-id", default=None, help="only this pipeline (its task group id)")
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="the Claude connection to cancel through")
    parser.add_argument("--storage-conn-id", default=None, help="the connection for --storage")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the recorded batches, cancel nothing")
    action.add_argument(
        "--resume",
        action="store_true",
        help="remove the run's cancel record (a resume on purpose), then clear the run's tasks",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Cancel (or list, or resume) the run; return 0 when everything is done with, else 1."""
    args = parse_args(argv)
    from airflow.sdk import ObjectStoragePath

    try:
        storage = ObjectStoragePath(args.storage, conn_id=args.storage_conn_id)
        root = run_root(storage, args.dag_id, args.run_id)
        pipelines = pipeline_ids(root, args.pipeline_id)
        if args.resume:
            return _resume(root, pipelines)
        batches = recorded_batches(root, args.pipeline_id)
        if args.list:
            return _list(root, args.pipeline_id, batches)
        if not pipelines:
            print(f"no submitted shard is recorded under {root} (no pipeline run folder): nothing to cancel")
            return 0
        for pipeline in pipelines:  # the record first: nothing is created or sent after this line
            write_cancel(RunFolder(root / pipeline))
        batches = recorded_batches(root, args.pipeline_id)  # read again: a create may have just landed
        stopped = [
            shard for pipeline in pipelines for shard in stopped_shards(RunFolder(root / pipeline), pipeline)
        ]
        rounds = {pipeline: stopped_round(RunFolder(root / pipeline)) for pipeline in pipelines}
    except ClaudeBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ok, cancelled = _cancel_batches(args.conn_id, batches)
    for shard in stopped:
        print(
            f"{shard.pipeline_id} round {shard.round_index} shard {shard.shard_index}: stopped before create "
            f"({shard.note}); its {shard.requests} records are pending, reason canceled"
        )
    for pipeline, round_index in rounds.items():
        if round_index is not None:
            print(f"{pipeline}: round {round_index} and later stopped: no requeue round will be built")
    records = ", ".join(str(RunFolder(root / pipeline).cancel_record) for pipeline in pipelines)
    rounds_stopped = sum(1 for value in rounds.values() if value is not None)
    print(
        f"stopped: {cancelled} batch(es) cancelled, {len(stopped)} shard(s) stopped before create, "
        f"{rounds_stopped} pipeline(s) with requeue rounds stopped; the cancel is recorded in {records}"
    )
    return 0 if ok else 1


def _cancel_batches(conn_id: str, batches: list[RecordedBatch]) -> tuple[bool, int]:
    """Cancel the recorded batches (a shard with only refused creates has none); print each one."""
    to_cancel = [batch for batch in batches if batch.batch_id is not None or batch.status == "intent"]
    if not to_cancel:
        return True, 0
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook(conn_id=conn_id)
    ok, cancelled = True, 0
    for outcome in cancel_recorded(to_cancel, hook.cancel_batch):
        ok = ok and outcome.ok
        cancelled += outcome.result == "cancel requested"
        print(_line(outcome.batch, outcome.batch.batch_id or "-", outcome.result))
    return ok, cancelled


def _list(root: StoragePath, pipeline_id: str | None, batches: list[RecordedBatch]) -> int:
    if not batches:
        where = f"{root}/{pipeline_id}" if pipeline_id else str(root)
        print(f"no submitted shard is recorded under {where}")
    for batch in batches:
        print(_line(batch, batch.batch_id or "-", batch.status))
    return 0


def _resume(root: StoragePath, pipelines: list[str]) -> int:
    """Remove the cancel records (a resume on purpose); the run's tasks are cleared next."""
    for pipeline in pipelines:
        removed = remove_cancel(RunFolder(root / pipeline))
        state = "cancel record removed" if removed else "was not canceled"
        print(f"{pipeline}: {state}")
    print("to resume, clear the run's tasks (its unfinished rounds, or the whole pipeline group)")
    return 0


def _line(batch: RecordedBatch, batch_id: str, result: str) -> str:
    return f"{batch.pipeline_id} round {batch.round_index} shard {batch.shard_index}: {batch_id}: {result}"


if __name__ == "__main__":
    sys.exit(main())
