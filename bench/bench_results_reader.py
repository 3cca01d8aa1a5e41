"""Results download: this package's streaming reader against the SDK's ``batches.results()``.

Run: ``.venv/bin/python bench/bench_results_reader.py [--lines 100000] [--small-lines 10000]``

The emulator runs as its console script in a process of its own. Two batches are created (``--lines``
and ``--small-lines`` requests) and left to end; then each reader downloads and parses every result
line in a fresh child process, so that each one's peak memory is its own:

- ``sdk``: ``client.messages.batches.results(batch_id)`` (JSONL decoder, a pydantic model per line);
- ``ours``: ``ClaudeBatchHook.iter_results(batch_id)`` (``results_reader`` over the raw stream, orjson).

Both touch every line's ``custom_id`` and result type. A child reports its time and its peak memory
above what it held before the download (the peak is reset first; then ``VmHWM`` after minus ``VmRSS``
before). Memory is flat in the number of lines when the small and the large batch cost about the same.

A last section times the line splitter alone on in-memory bodies of equal size made of short lines
and of 4 MB lines, in 64 KB chunks: linear time means the same MB/s for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.support import API_KEY, emulator_process, status_kib
from bench.support import create_ended_batch as support_create_ended_batch


def create_ended_batch(base_url: str, count: int) -> str:
    """Create a batch of ``count`` short classifier requests, wait for its end, return its id."""
    parts = [
        orjson.dumps(
            {
                "custom_id": f"ticket-{index:06d}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 64,
                    "system": "Classify the support ticket. Labels: billing, bug, account, other.",
                    "messages": [{"role": "user", "content": f"ticket {index}: I was charged twice"}],
                },
            }
        )
        for index in range(count)
    ]
    body = b'{"requests":[' + b",".join(parts) + b"]}"
    return support_create_ended_batch(base_url, body)


def read_with_sdk(base_url: str, batch_id: str) -> int:
    import anthropic

    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url, max_retries=0)
    client.messages.batches.retrieve(batch_id)  # connection and imports warm, outside the measure
    return _measure(lambda: ((r.custom_id, r.result.type) for r in client.messages.batches.results(batch_id)))


def read_with_hook(base_url: str, batch_id: str) -> int:
    os.environ["AIRFLOW_CONN_CLAUDE_BATCH_BENCH"] = json.dumps(
        {"conn_type": "claude-batch", "host": base_url, "password": API_KEY}
    )
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook("claude_batch_bench")
    hook.get_batch(batch_id)  # connection, imports and both HTTP clients warm, outside the measure
    hook._stream_client.get("/v1/messages/batches", params={"limit": 1})
    return _measure(lambda: ((r["custom_id"], r["result"]["type"]) for r in hook.iter_results(batch_id)))


def _measure(read) -> int:  # type: ignore[no-untyped-def]
    # Reset the peak to the current size (Linux): what the imports needed does not count.
    Path("/proc/self/clear_refs").write_text("5")
    before_kib = status_kib("VmRSS")
    started = time.perf_counter()
    lines = sum(1 for _ in read())
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "lines": lines,
                "seconds": seconds,
                "lines_per_second": lines / seconds,
                "peak_above_start_mib": (status_kib("VmHWM") - before_kib) / 1024,
            }
        )
    )
    return lines


def run_child(reader: str, base_url: str, batch_id: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", reader, base_url, batch_id],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def splitter_rates(total_mb: int = 64) -> dict[str, float]:
    """MB/s of the line splitter alone on ``total_mb`` of short lines and of 4 MB lines."""
    from airflow_claude_batch.core.run.line_reader import iter_lines

    rates = {}
    for name, line_bytes in (("1 KB lines", 1_000), ("4 MB lines", 4_000_000)):
        line = b"x" * (line_bytes - 1) + b"\n"
        body = line * (total_mb * 1_000_000 // line_bytes)
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        started = time.perf_counter()
        count = sum(1 for _ in iter_lines(chunks))
        rates[name] = len(body) / 1e6 / (time.perf_counter() - started)
        assert count == len(body) // line_bytes
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description="Results reader against the SDK's results()")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--small-lines", type=int, default=10_000)
    parser.add_argument(
        "--child", nargs=3, metavar=("READER", "BASE_URL", "BATCH_ID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        reader, base_url, batch_id = args.child
        {"sdk": read_with_sdk, "ours": read_with_hook}[reader](base_url, batch_id)
        return
    with emulator_process() as emulator:
        batches = {
            count: create_ended_batch(emulator.base_url, count) for count in (args.small_lines, args.lines)
        }
        rows = []
        for count, batch_id in batches.items():
            for reader in ("sdk", "ours"):
                result = run_child(reader, emulator.base_url, batch_id)
                assert result["lines"] == count, result
                rows.append((reader, count, result))
    print(f"{'reader':<6} {'lines':>8} {'seconds':>8} {'lines/s':>10} {'peak MiB':>9}")
    for reader, count, result in rows:
        print(
            f"{reader:<6} {count:>8,} {result['seconds']:>8.2f} {result['lines_per_second']:>10,.0f} "
            f"{result['peak_above_start_mib']:>9.1f}"
        )
    large = {reader: result for reader, count, result in rows if count == args.lines}
    ratio = large["ours"]["lines_per_second"] / large["sdk"]["lines_per_second"]
    print(f"speed-up on {args.lines:,} lines: {ratio:.1f}x")
    for name, rate in splitter_rates().items():
        print(f"splitter alone, {name}: {rate:,.0f} MB/s")


if __name__ == "__main__":
    main()
