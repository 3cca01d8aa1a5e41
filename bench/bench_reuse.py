"""The answer lookup's cost: the build with ``reuse_answers`` against the build without it.

    python -m bench reuse --records 100000 --hit-fraction 0.9

Input: N records of ``--text-bytes`` of text each (``bench_build.make_input``). Each case runs
``build_run`` in a fresh child process whose peak resident memory is read from that child alone
(``os.wait4``):

- ``off``: the build without a store (every request sharded);
- ``reuse``: the build with the answer store under the same storage root, where a ``--hit-fraction``
  of the records' answers were stored beforehand (written before the clock, by the store's own
  create-only ``put``); hits go to ``reused.jsonl``, misses to the shards.

The lookup's time per record is ``(reuse - off) / N``; its memory is the difference of the peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_build import MAX_TOKENS, MODEL, SYSTEM, make_input

CASES = ("off", "reuse")


def _template() -> Any:
    from airflow_claude_batch.core.requests.rendering import RequestTemplate

    return RequestTemplate(model=MODEL, max_tokens=MAX_TOKENS, system=SYSTEM)


def fill_store(source: Path, root: Path, fraction: float) -> int:
    """Store an answer for the first ``fraction`` of the records (as earlier runs would have)."""
    from airflow_claude_batch.core.requests.request_stream import iter_requests
    from airflow_claude_batch.core.requests.sources import FileRecords
    from airflow_claude_batch.core.reuse import AnswerStore, line_key
    from airflow_claude_batch.core.reuse.answer_store import StoredAnswer

    store = AnswerStore(root)
    total = sum(1 for _ in source.open("rb"))
    wanted = int(total * fraction)
    stored = 0
    for request in iter_requests(FileRecords([source]), _template()):
        if stored >= wanted:
            break
        custom_id, key = line_key(request.line)
        answer = {"model": MODEL, "text": "billing", "parsed": None, "usage": {"output_tokens": 2}}
        store.put(StoredAnswer(key, answer, 0.00001, "bench-run", "msgbatch_bench", custom_id))
        stored += 1
    return stored


def run_case(case: str, source: Path, root: Path) -> dict[str, Any]:
    from airflow_claude_batch.core.build.build_step import build_run
    from airflow_claude_batch.core.requests.sources import FileRecords
    from airflow_claude_batch.core.reuse import AnswerStore
    from airflow_claude_batch.core.run.layout import RunFolder

    folder = RunFolder.for_run(root, "bench", case, "claude_batch")
    store = AnswerStore(root) if case == "reuse" else None
    started = time.perf_counter()
    result = build_run(FileRecords([source]), _template(), folder, answer_store=store)
    elapsed = time.perf_counter() - started
    assert result.estimate is not None
    return {"seconds": elapsed, "sent": result.estimate.records, "reused": result.reused_requests}


def measure(case: str, source: Path, root: Path) -> dict[str, Any]:
    """Run one case in a fresh process; return its figures and that process's peak RSS."""
    os.sync()
    command = [sys.executable, "-m", "bench.bench_reuse", "--child", case, str(source), str(root)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{case} failed")
    figures = json.loads(output.decode().strip().splitlines()[-1])
    figures["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench reuse", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to build (default 100,000)")
    parser.add_argument("--text-bytes", type=int, default=300, help="text per record (default 300)")
    parser.add_argument("--hit-fraction", type=float, default=0.9, help="answers stored beforehand (0.9)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to write (default: a temporary folder)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SOURCE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, source, root = args.child
        print(json.dumps(run_case(case, Path(source), Path(root))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-reuse-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        source, root = workdir / "records.jsonl", workdir / "runs"
        make_input(source, args.records, args.text_bytes)
        stored = fill_store(source, root, args.hit_fraction)
        print(f"input: {args.records:,} records; {stored:,} answers stored beforehand")
        results = {case: measure(case, source, root) for case in CASES}
        for case, figures in results.items():
            print(
                f"{case:>6}: {figures['seconds']:7.2f} s  {figures['sent']:>9,} sent  "
                f"{figures['reused']:>9,} "
                f"reused  peak RSS {figures['peak_rss_mib']:6,.0f} MiB"
            )
        extra = results["reuse"]["seconds"] - results["off"]["seconds"]
        print(
            f"lookup: {extra / args.records * 1e6:+.1f} µs per record against the build without it; "
            f"peak RSS {results['reuse']['peak_rss_mib'] - results['off']['peak_rss_mib']:+.0f} MiB"
        )


if __name__ == "__main__":
    main()
