"""Prune the answer store: ``python -m airflow_claude_batch.prune_answers``.

Removes the stored answers older than ``--older-than`` (and entries that cannot be read) from the
answer store under ``--storage`` (``{storage}/_answers/``, see ``docs/architecture.md``, "The answer
store"). Safe beside running pipelines: a lookup whose entry was just removed sends the request, and
the next good answer is stored again.

::

    python -m airflow_claude_batch.prune_answers --storage s3://bucket/claude-runs --older-than 180d \\
        [--storage-conn-id aws_default]
"""

from __future__ import annotations

import argparse
import sys

from airflow_claude_batch.core.reuse import parse_reuse_answers, prune
from airflow_claude_batch.exceptions import ClaudeBatchError


def main(argv: list[str] | None = None) -> int:
    """Prune the store; print how many answers were removed; return 0, or 1 on an error."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_claude_batch.prune_answers",
        description="Remove stored answers older than a maximum age from the answer store.",
    )
    parser.add_argument("--storage", required=True, help="the pipelines' storage root URI")
    parser.add_argument("--older-than", required=True, help="a maximum age such as 180d, 12h or 90m")
    parser.add_argument("--storage-conn-id", default=None, help="the connection for --storage")
    args = parser.parse_args(argv)
    from airflow.sdk import ObjectStoragePath

    try:
        policy = parse_reuse_answers(args.older_than)
        if policy is None or policy.max_age is None:
            raise parser.error("--older-than must be a maximum age such as 180d")
        removed = prune(ObjectStoragePath(args.storage, conn_id=args.storage_conn_id), policy.max_age)
    except ClaudeBatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"removed {removed} answer(s) older than {args.older_than} from {args.storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
