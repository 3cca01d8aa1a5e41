"""Submit memory: a 100,000-request, ~200 MB shard streamed from its file, against the SDK's create.

Run: ``.venv/bin/python bench/bench_submit_memory.py [--requests 100000] [--request-bytes 2000]``

Writes one shard file (one request JSON per line, about ``--request-bytes`` each, as the build writes
them), starts ``claude-batch-emulator`` in a process of its own, and submits the shard twice, each time
from a fresh child process:

- ``ours``: ``ClaudeBatchHook.create_batch_from_file(path, request_count, body_bytes)``, the shard
  streamed as the request body with an exact ``Content-Length``;
- ``sdk``: the shard read into a list of dicts, then ``client.messages.batches.create(requests=...)``,
  which also encodes the whole body in memory.

Each child resets its peak memory after its imports and client set-up, then reports the peak above
that point (``VmHWM`` minus the ``VmRSS`` at the start) and the time the submit took.
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

import orjson

from airflow_claude_batch.core.api.limits import batch_body_size
from bench.support import API_KEY, emulator_process, status_kib


def write_shard(path: Path, requests: int, request_bytes: int) -> tuple[int, int]:
    """Write a shard of ``requests`` lines of about ``request_bytes``; return (count, body bytes)."""
    system = "Classify the support ticket. Labels: billing, bug, account, other.\n"
    system += "Guidelines: " + "x" * max(request_bytes - 300, 0)
    total = 0
    with path.open("wb") as out:
        for index in range(requests):
            line = orjson.dumps(
                {
                    "custom_id": f"ticket-{index:06d}",
                    "params": {
                        "model": "claude-haiku-4-5",
                        "max_tokens": 64,
                        "system": system,
                        "messages": [{"role": "user", "content": f"ticket {index}: I was charged twice"}],
                    },
                }
            )
            total += len(line)
            out.write(line + b"\n")
    return requests, batch_body_size(total, requests)


def submit_with_hook(base_url: str, shard: str, count: int, body_bytes: int) -> None:
    os.environ["AIRFLOW_CONN_CLAUDE_BATCH_BENCH"] = json.dumps(
        {"conn_type": "claude-batch", "host": base_url, "password": API_KEY}
    )
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    hook = ClaudeBatchHook("claude_batch_bench")
    hook.test_connection()  # imports, connection and clients warm, outside the measure
    hook._stream_client.get("/v1/messages/batches", params={"limit": 1})
    _measure(lambda: hook.create_batch_from_file(Path(shard), count, body_bytes))


def submit_with_sdk(base_url: str, shard: str, count: int, body_bytes: int) -> None:
    import anthropic

    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url, max_retries=0)
    client.messages.batches.list(limit=1)

    def create() -> dict:
        with open(shard, "rb") as handle:
            requests = [orjson.loads(line) for line in handle]
        return client.messages.batches.create(requests=requests).model_dump(mode="json")

    _measure(create)


def _measure(submit) -> None:  # type: ignore[no-untyped-def]
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak: the imports do not count
    before_kib = status_kib("VmRSS")
    started = time.perf_counter()
    batch = submit()
    seconds = time.perf_counter() - started
    report = {
        "seconds": seconds,
        "requests": sum(batch["request_counts"].values()),
        "peak_above_start_mib": (status_kib("VmHWM") - before_kib) / 1024,
        "start_rss_mib": before_kib / 1024,
    }
    print(json.dumps(report))


def run_child(how: str, base_url: str, shard: Path, count: int, body_bytes: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", how, base_url, str(shard), str(count), str(body_bytes)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Peak memory of submitting one full shard")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--request-bytes", type=int, default=2_000)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        how, base_url, shard, count, body_bytes = args.child
        submit = {"ours": submit_with_hook, "sdk": submit_with_sdk}[how]
        submit(base_url, shard, int(count), int(body_bytes))
        return
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as folder:
        shard = Path(folder) / "shard-00000.requests.jsonl"
        count, body_bytes = write_shard(shard, args.requests, args.request_bytes)
        print(f"shard: {count:,} requests, create body {body_bytes / 1e6:,.1f} MB")
        with emulator_process() as emulator:
            results = {
                how: run_child(how, emulator.base_url, shard, count, body_bytes) for how in ("ours", "sdk")
            }
    print(f"{'submit':<6} {'seconds':>8} {'peak MiB above start':>21} {'x body':>7}")
    for how, result in results.items():
        assert result["requests"] == count, result
        peak = result["peak_above_start_mib"]
        print(f"{how:<6} {result['seconds']:>8.1f} {peak:>21.1f} {peak * 2**20 / body_bytes:>7.2f}")


if __name__ == "__main__":
    main()
