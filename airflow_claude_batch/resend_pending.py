"""Send a finished run's pending records again: ``python -m airflow_claude_batch.resend_pending``.

A record left pending after the last round (expired or failing again and again, held by the budget,
or stopped by a cancel) was never answered. This command reads the run's ``pending.jsonl`` and its
input, and writes the pending records, as they are in the input, to one JSON Lines file; a new run
with that file as its input sends exactly them, so nothing already answered is paid again. A record
whose synchronous retry had an unknown outcome (``sync_outcome_unknown``) is kept back: the API may have
answered and billed it.

::

    python -m airflow_claude_batch.resend_pending --storage s3://bucket/claude-runs \\
        --dag-id overnight_classification --run-id scheduled__2026-11-02T18:00:00+00:00 \\
        --pipeline-id classify_tickets --source s3://support/tickets/2026-11-02.jsonl \\
        --out s3://support/tickets/2026-11-02.pending.jsonl [--id-field id] \\
        [--storage-conn-id aws_default] [--source-conn-id aws_default]

Then trigger a run with that input: for the sample DAGs, ``airflow dags trigger
overnight_classification --conf '{"input_path": "s3://support/tickets/2026-11-02.pending.jsonl"}'``
(a custom input: its answers stay in that run's folder, ``output.jsonl``).
"""

from __future__ import annotations

import argparse
import sys

from airflow_claude_batch import DEFAULT_PIPELINE_ID
from airflow_claude_batch.core.requests import FileRecords, expand_glob, split_glob
from airflow_claude_batch.core.requeue import write_pending_records
from airflow_claude_batch.core.run import RunFolder, readable_uri
from airflow_claude_batch.exceptions import ClaudeBatchError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_claude_batch.resend_pending",
        description="Write a finished run's pending records, from its input, to a file a new run sends.",
    )
    parser.add_argument("--storage", required=True, help="the pipeline's storage root URI")
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--pipeline-id", default=DEFAULT_PIPELINE_ID, help="the pipeline's task group id")
    parser.add_argument("--source", required=True, help="the run's input: a URI or a glob")
    parser.add_argument("--out", required=True, help="where the pending records go (JSON Lines)")
    parser.add_argument("--id-field", default="id", help="the field of each record that holds its id")
    parser.add_argument("--source-format", default=None, help="jsonl, csv or parquet (default: by name)")
    parser.add_argument("--storage-conn-id", default=None, help="the connection for --storage and --out")
    parser.add_argument("--source-conn-id", default=None, help="the connection for --source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the pending records; return 0, or 1 when the run or its input cannot be read."""
    args = parse_args(argv)
    from airflow.sdk import ObjectStoragePath

    try:
        storage = ObjectStoragePath(args.storage, conn_id=args.storage_conn_id)
        folder = RunFolder.for_run(storage, args.dag_id, args.run_id, args.pipeline_id)
        base, pattern = split_glob(args.source)
        root = ObjectStoragePath(base, conn_id=args.source_conn_id)
        source = FileRecords(expand_glob(root, pattern) if pattern else [root], args.source_format)
        out = ObjectStoragePath(args.out, conn_id=args.storage_conn_id)
        pick = write_pending_records(folder, source, args.id_field, out)
    except ClaudeBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{pick.written} pending record(s) written to {readable_uri(out)}; run them as a new run's input")
    if pick.kept_back:
        print(f"{pick.kept_back} kept back: their synchronous retry's outcome is unknown (possibly billed)")
    if pick.missing:
        shown = ", ".join(pick.missing[:10]) + (" ..." if len(pick.missing) > 10 else "")
        print(f"{len(pick.missing)} pending id(s) are no longer in the input: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
