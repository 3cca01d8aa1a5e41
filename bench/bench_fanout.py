"""Fanout of a batch's results into outcome files: this package's path against the SDK's ``results()`` loop.

Run: ``.venv/bin/python bench/bench_fanout.py [--results 100000] [--small-results 10000]``

The emulator (``claude-batch-emulator``) runs in a process of its own. For each size, one shard file is
written and submitted as a batch, which is left to end. Then each path fans the results out in a fresh
child process, so that each one's time and peak memory are its own:

- ``sdk``: the loop a user of the SDK (and of the existing operators) writes:
  ``for result in client.messages.batches.results(batch_id)``, each result dumped to a dict and
  written to its outcome file with the same row builder (``result_rows.route_line``) and writers;
- ``ours``: ``fanout.fan_out_shard`` over ``ClaudeBatchHook.iter_results`` (the streaming reader, the
  reconciliation against the shard's requests file, token and cost totals), as the fanout task runs it.

Both write the same five files; the script checks that their rows are the same. A child reports its
time and its peak memory above what it held before the fanout (the peak is reset first; then ``VmHWM``
after minus ``VmRSS`` before). Memory is flat when the small and the large batch cost about the same.
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

import orjson

from bench.support import API_KEY, emulator_process, status_kib
from bench.support import create_ended_batch as support_create_ended_batch

# 2% of requests end errored, so the errored file is written too.
EMULATOR_OPTIONS = ("--error-rate", "0.02")
OUTCOMES = ("succeeded", "invalid_output", "errored", "expired", "canceled")


def write_shard(run_root: Path, count: int) -> Path:
    """Write round 0's shard of ``count`` classifier requests; return its requests file."""
    from airflow_claude_batch.core.run.layout import RunFolder

    path = RunFolder(run_root).shard_requests(0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for index in range(count):
            request = {
                "custom_id": f"ticket-{index:06d}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 64,
                    "system": "Classify the support ticket. Labels: billing, bug, account, other.",
                    "messages": [{"role": "user", "content": f"ticket {index}: I was charged twice"}],
                },
            }
            out.write(orjson.dumps(request) + b"\n")
    return path


def create_ended_batch(base_url: str, shard: Path) -> str:
    """Submit the shard file as a batch, wait for its end, warm its results; return its id."""
    body = b'{"requests":[' + b",".join(shard.read_bytes().splitlines()) + b"]}"
    return support_create_ended_batch(base_url, body)


def fan_out_with_sdk(base_url: str, batch_id: str, run_root: Path) -> None:
    import anthropic

    from airflow_claude_batch.core.money.pricing import PriceTable
    from airflow_claude_batch.core.results.result_rows import RowPricer, route_line
    from airflow_claude_batch.core.run.layout import RunFolder
    from airflow_claude_batch.core.run.outcome_files import OutcomeFiles, shard_outcome_paths

    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url, max_retries=0)
    client.messages.batches.retrieve(batch_id)  # connection and imports warm, outside the measure
    pricer = RowPricer(PriceTable.load())

    def run() -> int:
        count = 0
        with OutcomeFiles(shard_outcome_paths(RunFolder(run_root), 0, 0)) as files:
            for result in client.messages.batches.results(batch_id):
                routed = route_line(
                    result.model_dump(mode="json", exclude_unset=True), pricer=pricer, validator=None
                )
                files.write(routed.outcome, routed.row)
                count += 1
        return count

    _measure(run)


def fan_out_with_package(base_url: str, batch_id: str, run_root: Path) -> None:
    os.environ["AIRFLOW_CONN_CLAUDE_BATCH_BENCH"] = json.dumps(
        {"conn_type": "claude-batch", "host": base_url, "password": API_KEY}
    )
    from airflow_claude_batch.core.money.pricing import PriceTable
    from airflow_claude_batch.core.results.fanout import fan_out_shard
    from airflow_claude_batch.core.run.layout import RunFolder
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook("claude_batch_bench")
    hook.get_batch(batch_id)  # connection, imports and both HTTP clients warm, outside the measure
    hook._stream_client.get("/v1/messages/batches", params={"limit": 1})
    prices = PriceTable.load()
    folder = RunFolder(run_root)

    def run() -> int:
        summary = fan_out_shard(
            folder=folder,
            round_index=0,
            shard_index=0,
            requests_path=folder.shard_requests(0, 0),
            open_results=lambda: hook.iter_results(batch_id),
            prices=prices,
            batch_id=batch_id,
        )
        return sum(summary.outcome_counts.values())

    _measure(run)


def _measure(run: Any) -> None:
    # Reset the peak to the current size (Linux): what the imports needed does not count.
    Path("/proc/self/clear_refs").write_text("5")
    before_kib = status_kib("VmRSS")
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "rows_per_second": rows / seconds,
                "peak_above_start_mib": (status_kib("VmHWM") - before_kib) / 1024,
            }
        )
    )


def run_child(path: str, base_url: str, batch_id: str, run_root: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", path, base_url, batch_id, str(run_root)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def outcome_rows(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Each outcome file's rows, in id order (results arrive in any order; key order may differ)."""
    from airflow_claude_batch.core.run.layout import RunFolder

    folder = RunFolder(run_root)
    return {
        outcome: sorted(
            (orjson.loads(line) for line in folder.shard_outcome(0, 0, outcome).read_bytes().splitlines()),
            key=lambda row: row["custom_id"],
        )
        for outcome in OUTCOMES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Fanout against the SDK's results() loop")
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--small-results", type=int, default=10_000)
    parser.add_argument(
        "--child", nargs=4, metavar=("PATH", "BASE_URL", "BATCH_ID", "RUN"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        path, base_url, batch_id, run_root = args.child
        {"sdk": fan_out_with_sdk, "ours": fan_out_with_package}[path](base_url, batch_id, Path(run_root))
        return
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch,
        emulator_process(extra_args=EMULATOR_OPTIONS) as emulator,
    ):
        for count in (args.small_results, args.results):
            shard = write_shard(Path(scratch, "sdk", str(count)), count)
            batch_id = create_ended_batch(emulator.base_url, shard)
            write_shard(Path(scratch, "ours", str(count)), count)
            for path in ("sdk", "ours"):
                result = run_child(path, emulator.base_url, batch_id, Path(scratch, path, str(count)))
                assert result["rows"] == count, result
                rows.append((path, count, result))
            same = outcome_rows(Path(scratch, "sdk", str(count))) == outcome_rows(
                Path(scratch, "ours", str(count))
            )
            assert same, "the two paths wrote different rows"
    print(f"{'path':<6} {'results':>8} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}")
    for path, count, result in rows:
        print(
            f"{path:<6} {count:>8,} {result['seconds']:>8.2f} {result['rows_per_second']:>10,.0f} "
            f"{result['peak_above_start_mib']:>9.1f}"
        )
    large = {path: result for path, count, result in rows if count == args.results}
    print(f"speed-up on {args.results:,} results: {large['sdk']['seconds'] / large['ours']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
