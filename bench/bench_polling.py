"""Coalesced polling: N batches waiting in one triggerer-like process, and the API calls they cost.

Run: ``python -m bench polling --batches 500 --minutes 2 [--interval 30] [--rpm-limit 4000]
[--share 0.5] [--max-startup 300]``

The emulator runs as its console script in a process of its own; N batches are created in it that
stay ``in_progress`` for the whole run. One worker process, with Airflow loaded as in a triggerer,
runs N :class:`~airflow_claude_batch.triggers.batch.ClaudeBatchTrigger` on one event loop, one per
batch, polling every ``--interval`` seconds through the connection's shared poller. Once every
trigger has seen its batch, the window opens for ``--minutes``; over it are counted:

- the API calls (lists and retrieves, from the emulator's stats), against the N x 60 / interval
  calls a minute that polling each batch on its own at the same interval makes;
- the looks each trigger got at its batch a minute (how fresh each wait's view stays);
- event-loop lag: a ticker sleeps 50 ms at a time and records how late it wakes (p99 and max), and
  the longest garbage collection;
- the worker's CPU share and resident memory.

The last line printed is ``calls per minute: X coalesced vs Y per batch (Z x fewer)``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx

from airflow_claude_batch.core.wait.coalesced_polling import calls_per_minute, per_batch_calls_per_minute
from bench.bench_triggerer import CONN_ID, Meter, cpu_seconds, ticker
from bench.support import API_KEY, emulator_process, status_kib

CREATE_THREADS = 8


# --- the worker: N triggers in one loop ---------------------------------------------------------------


def metered_trigger_class(looks: list[int]) -> Any:
    from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger

    class MeteredTrigger(ClaudeBatchTrigger):
        def __init__(self, index: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.index = index

        async def _poll(self) -> Any:
            batch, error = await super()._poll()
            looks[self.index] += 1
            return batch, error

    return MeteredTrigger


async def api_calls(base_url: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        stats = (await client.get(f"{base_url}/_emulator/stats")).raise_for_status().json()
    return stats["lists"] + stats["retrieves"]


async def worker(args: argparse.Namespace, batch_ids: list[str]) -> dict[str, Any]:
    import airflow.triggers.base  # noqa: F401  (a triggerer has Airflow loaded)

    looks = [0] * len(batch_ids)
    trigger_class = metered_trigger_class(looks)
    meter = Meter()

    async def run(index: int, batch_id: str) -> None:
        end_time = time.time() + 86_400
        trigger = trigger_class(
            index, batch_id=batch_id, conn_id=CONN_ID, poll_interval=args.interval, end_time=end_time
        )
        async for _event in trigger.run():
            return

    gc.collect()
    gc.callbacks.append(meter.on_gc)
    rss_before = status_kib("VmRSS") / 1024
    started = time.perf_counter()
    tick = asyncio.create_task(ticker(meter))
    tasks = [asyncio.create_task(run(index, batch_id)) for index, batch_id in enumerate(batch_ids)]
    while min(looks) == 0 and time.perf_counter() - started < args.max_startup:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    startup = time.perf_counter() - started if min(looks) > 0 else None
    # The window opens one interval later: the first cycles' paging for batches of unknown age is over.
    await asyncio.sleep(args.interval)
    calls_before, looks_before = await api_calls(args.base_url), sum(looks)
    meter.window_start = time.perf_counter()
    meter.window_end = meter.window_start + 60 * args.minutes
    cpu_start = cpu_seconds()
    await asyncio.sleep(60 * args.minutes)
    cpu_used = cpu_seconds() - cpu_start
    calls = await api_calls(args.base_url) - calls_before
    window_looks = sum(looks) - looks_before
    seconds = time.perf_counter() - meter.window_start
    rss_after = status_kib("VmRSS") / 1024
    for task in [*tasks, tick]:
        task.cancel()
    await asyncio.gather(*tasks, tick, return_exceptions=True)
    lags = sorted(lag for at, lag in meter.lags if meter.in_window(at)) or [float("nan")]
    collections = [(gen, took) for at, gen, took in meter.collections if meter.in_window(at)]
    return {
        "batches": len(batch_ids),
        "interval_s": args.interval,
        "minutes": seconds / 60,
        "startup_s": startup,
        "calls": calls,
        "coalesced_calls_per_min": calls_per_minute(calls, seconds),
        "per_batch_calls_per_min": per_batch_calls_per_minute(len(batch_ids), args.interval),
        "looks_per_trigger_per_min": calls_per_minute(window_looks, seconds) / len(batch_ids),
        "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": 1000 * lags[-1],
        "gc_full_collections": sum(gen == 2 for gen, _ in collections),
        "gc_max_ms": 1000 * max((took for _, took in collections), default=0.0),
        "cpu_share": cpu_used / seconds,
        "rss_mib": rss_after,
        "kib_per_trigger": 1024 * (rss_after - rss_before) / len(batch_ids),
    }


# --- the driver: an emulator process, the batches, then the worker --------------------------------------


def create_running_batches(base_url: str, count: int) -> list[str]:
    """Create ``count`` one-request batches that stay in progress for the whole run."""
    httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()
    faults = {"processing_seconds": 86_000}
    httpx.post(f"{base_url}/_emulator/faults", json=faults, timeout=10).raise_for_status()
    client = anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0)
    request = {
        "custom_id": "ticket-1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "my invoice shows a double charge"}],
        },
    }
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        return list(pool.map(lambda _: client.messages.batches.create(requests=[request]).id, range(count)))


def run_worker(base_url: str, batch_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = batch_file.with_name("result.json")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(batch_file.parent / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "claude-batch", "host": base_url, "password": API_KEY}
        ),
        "CLAUDE_BATCH_BATCH_RPM_LIMIT": str(args.rpm_limit),
        "CLAUDE_BATCH_POLL_RPM_SHARE": str(args.share),
    }
    command = [sys.executable, "-m", "bench.bench_polling", "--worker", "--base-url", base_url]
    command += ["--batch-ids", str(batch_file), "--out", str(out), "--interval", str(args.interval)]
    command += ["--minutes", str(args.minutes), "--max-startup", str(args.max_startup)]
    limit = args.max_startup + args.interval + 60 * args.minutes + 600
    root = Path(__file__).resolve().parent.parent
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=limit, cwd=root)
    return json.loads(out.read_text())


def drive(args: argparse.Namespace) -> None:
    with (
        emulator_process(speed=None) as emulator,
        tempfile.TemporaryDirectory(prefix="bench-polling-") as scratch,
    ):
        created = time.monotonic()
        batch_ids = create_running_batches(emulator.base_url, args.batches)
        print(f"{len(batch_ids):,} batches created in {time.monotonic() - created:.0f} s", flush=True)
        batch_file = Path(scratch) / "batch_ids.json"
        batch_file.write_text(json.dumps(batch_ids))
        row = run_worker(emulator.base_url, batch_file, args)
    print(json.dumps(row), flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    startup = "not all" if row["startup_s"] is None else f"{row['startup_s']:.1f} s"
    print(
        f"{row['batches']:,} batches, poll interval {row['interval_s']:g} s, {row['minutes']:.1f} min "
        f"measured; every trigger saw its batch after {startup}; "
        f"{row['looks_per_trigger_per_min']:.2f} looks per trigger per minute; "
        f"event-loop lag p99 {row['lag_p99_ms']:.1f} ms, max {row['lag_max_ms']:.1f} ms; "
        f"longest GC {row['gc_max_ms']:.0f} ms; CPU {100 * row['cpu_share']:.1f} % of a core; "
        f"{row['kib_per_trigger']:.1f} KiB per trigger"
    )
    coalesced, per_batch = row["coalesced_calls_per_min"], row["per_batch_calls_per_min"]
    fewer = per_batch / coalesced if coalesced else float("inf")
    print(f"calls per minute: {coalesced:.1f} coalesced vs {per_batch:.1f} per batch ({fewer:.0f} x fewer)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=500, help="batches waiting at once (default 500)")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes measured (default 2)")
    parser.add_argument(
        "--interval", type=float, default=30.0, help="each trigger's poll interval, s (default 30)"
    )
    parser.add_argument(
        "--rpm-limit", type=float, default=4000, help="[claude_batch] batch_rpm_limit (default 4000, tier 4)"
    )
    parser.add_argument(
        "--share", type=float, default=0.5, help="[claude_batch] poll_rpm_share (default 0.5)"
    )
    parser.add_argument(
        "--max-startup", type=float, default=300.0, help="seconds to wait for every trigger's first look"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--batch-ids", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        batch_ids = json.loads(Path(args.batch_ids).read_text())
        Path(args.out).write_text(json.dumps(asyncio.run(worker(args, batch_ids))))
    else:
        drive(args)


if __name__ == "__main__":
    main()
