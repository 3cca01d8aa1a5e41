"""How fast the emulator takes a full-size create and serves 100,000 result lines, and its memory.

Run: ``.venv/bin/python bench/emulator_throughput.py [--requests 100000] [--prompt-bytes 2000]``

The emulator runs as its console script in a process of its own, so its peak memory (VmHWM) and
this client's work are measured apart. Prints the create body size and time, the time of the first
read after the end (when the result lines are rendered), and the results download rate through plain
``httpx`` without parsing: the server must never be a client's bottleneck.
"""

from __future__ import annotations

import argparse
import time

import httpx
import orjson

from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION
from bench.support import API_KEY, emulator_process, status_kib


def build_body(requests: int, prompt_bytes: int) -> bytes:
    """Return a create body of ``requests`` classifier requests with a ``prompt_bytes`` system prompt."""
    system = "Labels: billing, bug, feature_request, account, shipping, other\n" + "x" * prompt_bytes
    parts = []
    for index in range(requests):
        params = {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "system": system,
            "messages": [{"role": "user", "content": f"ticket {index}: my invoice shows a double charge"}],
        }
        parts.append(orjson.dumps({"custom_id": f"ticket-{index:06d}", "params": params}))
    return b'{"requests":[' + b",".join(parts) + b"]}"


def run(requests: int, prompt_bytes: int) -> dict[str, float]:
    """Create one batch of ``requests`` on a fresh emulator process and read its results back."""
    body = build_body(requests, prompt_bytes)
    headers = {
        "x-api-key": API_KEY,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
    }
    with emulator_process() as emulator, httpx.Client(timeout=600) as client:
        base_url = emulator.base_url
        client.get(f"{base_url}/v1/messages/batches", headers=headers)  # connection warm, outside the clock
        idle_rss = status_kib("VmHWM", pid=emulator.pid) / 1024
        started = time.perf_counter()
        response = client.post(f"{base_url}/v1/messages/batches", content=body, headers=headers)
        create_seconds = time.perf_counter() - started
        response.raise_for_status()
        batch_id = response.json()["id"]
        started = time.perf_counter()
        batch = client.get(f"{base_url}/v1/messages/batches/{batch_id}", headers=headers).json()
        render_seconds = time.perf_counter() - started
        started = time.perf_counter()
        lines = 0
        with client.stream("GET", batch["results_url"], headers=headers) as stream:
            for chunk in stream.iter_raw(1 << 20):
                lines += chunk.count(b"\n")
        download_seconds = time.perf_counter() - started
        peak_rss = status_kib("VmHWM", pid=emulator.pid) / 1024
    return {
        "requests": requests,
        "body_mb": len(body) / 1e6,
        "create_seconds": create_seconds,
        "render_seconds": render_seconds,
        "result_lines": lines,
        "download_seconds": download_seconds,
        "lines_per_second": lines / download_seconds,
        "server_idle_rss_mib": idle_rss,
        "server_peak_rss_mib": peak_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Emulator create and results throughput")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--prompt-bytes", type=int, default=2000)
    args = parser.parse_args()
    for name, value in run(args.requests, args.prompt_bytes).items():
        print(f"{name:>22}: {value:,.2f}" if isinstance(value, float) else f"{name:>22}: {value:,}")


if __name__ == "__main__":
    main()
