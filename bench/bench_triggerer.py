"""Triggerer capacity: N waiting triggers on one asyncio loop, polling the emulator.

Run: ``.venv/bin/python bench/bench_triggerer.py [--triggers 100,1000,5000] [--interval 5]
[--warmup 6] [--measure 20] [--variants idle,ours,async-per-trigger,thread]``

Each (variant, N) runs in a fresh worker process, as a triggerer runs its triggers: one process with
Airflow loaded, one event loop, N concurrent trigger coroutines. The emulator runs as its console
script in a process of its own, with batches that stay ``in_progress`` for the whole run. Start-up
is measured until every trigger has polled once (``startup_s``; "not all" past ``--max-startup``);
the rest over a window that opens one interval after that:

- CPU per poll: the process's user + system CPU time (all threads) divided by the polls completed;
- memory per trigger: resident memory after the window minus before the triggers started, over N;
- event-loop lag: a ticker sleeps 50 ms at a time and records how late it wakes (p99 and max), and
  the longest garbage collection in the window (full collections stop the loop too);
- poll gap: time between two polls of one trigger, over the interval asked for (1.0 = on time);
- the emulator's CPU share over the whole run, to show it was not the bottleneck.

``idle`` runs the ticker alone: the lag the machine itself causes at that moment.

Variants:

- ``ours``: :class:`~airflow_claude_batch.triggers.batch.ClaudeBatchTrigger` itself, reading the
  connection from ``AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT``;
- ``async-per-trigger``: the same native-async poll with one ``AsyncAnthropic`` per trigger instead
  of one shared per connection (what sharing the client buys);
- ``thread``: a stand-in written here of the pattern of the official provider's trigger: one hook per
  trigger caching a sync ``anthropic.Anthropic`` (SDK defaults), each poll in
  ``asyncio.to_thread(hook.get_batch, id)`` on the loop's default executor, a fixed sleep between polls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anthropic
import httpx

from bench.support import API_KEY, emulator_process, status_kib

CONN_ID = "claude_batch_default"
TICK_S = 0.05
BATCHES = 50  # triggers poll these round-robin: the server's work per poll does not depend on N


# --- the worker: N triggers in one loop ---------------------------------------------------------------


@dataclass
class Meter:
    """What the triggers and the ticker record."""

    window_start: float = float("inf")
    window_end: float = float("inf")
    polls: int = 0
    errors: int = 0
    gaps: list[float] = field(default_factory=list)
    lags: list[tuple[float, float]] = field(default_factory=list)
    served: set[int] = field(default_factory=set)
    collections: list[tuple[float, int, float]] = field(default_factory=list)
    _collecting_since: float = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: how long each collection stopped the world, by generation."""
        now = time.perf_counter()
        if phase == "start":
            self._collecting_since = now
        else:
            self.collections.append((now, info["generation"], now - self._collecting_since))

    def in_window(self, now: float) -> bool:
        return self.window_start <= now < self.window_end

    def poll_done(self, trigger: int, started: float, previous_start: float | None, ok: bool) -> None:
        self.served.add(trigger)
        now = time.perf_counter()
        if not self.in_window(now):
            return
        self.polls += 1
        self.errors += not ok
        if previous_start is not None:
            self.gaps.append(started - previous_start)


async def ticker(meter: Meter) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(TICK_S)
        after = time.perf_counter()
        meter.lags.append((after, after - before - TICK_S))


def ours_factory(meter: Meter, interval: float) -> Any:
    from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger

    class MeteredTrigger(ClaudeBatchTrigger):
        def __init__(self, index: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.index = index
            self.previous: float | None = None

        async def _poll(self) -> Any:
            started = time.perf_counter()
            batch, error = await super()._poll()
            meter.poll_done(self.index, started, self.previous, error is None)
            self.previous = started
            return batch, error

    async def run(index: int, batch_id: str) -> None:
        trigger = MeteredTrigger(
            index, batch_id=batch_id, conn_id=CONN_ID, poll_interval=interval, end_time=time.time() + 86_400
        )
        async for _event in trigger.run():
            return

    return run


def async_per_trigger_factory(meter: Meter, interval: float, base_url: str) -> Any:
    import random

    async def run(index: int, batch_id: str) -> None:
        client = anthropic.AsyncAnthropic(base_url=base_url, api_key=API_KEY, max_retries=0)
        previous = None
        await asyncio.sleep(random.uniform(0, interval))
        try:
            while True:
                started = time.perf_counter()
                try:
                    response = await client.messages.batches.with_raw_response.retrieve(batch_id)
                    body = json.loads(await response.read())
                    ok = True
                except anthropic.APIError:
                    ok, body = False, {}
                meter.poll_done(index, started, previous, ok)
                previous = started
                if body.get("processing_status") == "ended":
                    return
                await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        finally:
            await client.close()

    return run


class SyncPollingHook:
    """One per trigger, caching one sync SDK client, as the official provider's hook does."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    @cached_property
    def conn(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key=API_KEY)  # SDK defaults: 2 retries

    def get_batch(self, batch_id: str) -> Any:
        return self.conn.messages.batches.retrieve(batch_id)


def thread_factory(meter: Meter, interval: float, base_url: str) -> Any:
    async def run(index: int, batch_id: str) -> None:
        hook = SyncPollingHook(base_url)
        previous = None
        failures = 0
        while True:
            started = time.perf_counter()
            try:
                batch = await asyncio.to_thread(hook.get_batch, batch_id)
            except anthropic.APIError:
                meter.poll_done(index, started, previous, False)
                previous = started
                failures += 1
                if failures >= 5:
                    return
                await asyncio.sleep(interval)
                continue
            failures = 0
            meter.poll_done(index, started, previous, True)
            previous = started
            if batch.processing_status == "ended":
                return
            await asyncio.sleep(interval)

    return run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle(index: int, batch_id: str) -> None:
    """No trigger at all: the loop lag of the ticker alone, on this machine, at this moment."""


async def warm_up(variant: str, base_url: str, batch_id: str) -> None:
    """Make one poll the variant's way first: lazy imports and Airflow's first connection read (secrets
    backends, masking) happen once per process, before anything is measured."""
    if variant == "ours":
        from airflow_claude_batch.triggers.async_clients import shared_clients

        async with shared_clients().lease(CONN_ID) as client:
            await client.messages.batches.retrieve(batch_id)
    elif variant == "async-per-trigger":
        async with anthropic.AsyncAnthropic(base_url=base_url, api_key=API_KEY) as client:
            await client.messages.batches.retrieve(batch_id)
    elif variant == "thread":
        await asyncio.to_thread(SyncPollingHook(base_url).get_batch, batch_id)


async def worker(args: argparse.Namespace, batch_ids: list[str]) -> dict[str, Any]:
    meter = Meter()
    factories = {
        "idle": lambda: idle,
        "ours": lambda: ours_factory(meter, args.interval),
        "async-per-trigger": lambda: async_per_trigger_factory(meter, args.interval, args.base_url),
        "thread": lambda: thread_factory(meter, args.interval, args.base_url),
    }
    run = factories[args.variant]()
    # Every variant runs where a trigger runs: in a triggerer process, with Airflow loaded.
    import airflow.triggers.base  # noqa: F401

    await warm_up(args.variant, args.base_url, batch_ids[0])
    gc.collect()
    gc.callbacks.append(meter.on_gc)
    rss_before = status_kib("VmRSS") / 1024
    started = time.perf_counter()
    tick = asyncio.create_task(ticker(meter))
    tasks = [
        asyncio.create_task(run(index, batch_ids[index % len(batch_ids)])) for index in range(args.triggers)
    ]
    startup = await wait_for_every_trigger(meter, args, started)
    # One more interval after the last first poll: every gap measured is between two steady polls.
    meter.window_start = max(time.perf_counter() + args.interval, started + args.warmup)
    meter.window_end = meter.window_start + args.measure
    await asyncio.sleep(max(meter.window_start - time.perf_counter(), 0))
    cpu_start = cpu_seconds()
    await asyncio.sleep(max(meter.window_end - time.perf_counter(), 0))
    cpu_used = cpu_seconds() - cpu_start
    rss_after = status_kib("VmRSS") / 1024
    threads = threading.active_count()
    for task in [*tasks, tick]:
        task.cancel()
    await asyncio.gather(*tasks, tick, return_exceptions=True)
    window_lags = sorted(lag for at, lag in meter.lags if meter.in_window(at)) or [float("nan")]
    startup_lags = [lag for at, lag in meter.lags if at < meter.window_start] or [float("nan")]
    gaps = sorted(meter.gaps) or [float("nan")]
    window_collections = [(gen, took) for at, gen, took in meter.collections if meter.in_window(at)]
    return {
        "variant": args.variant,
        "triggers": args.triggers,
        "interval_s": args.interval,
        "startup_s": startup,
        "startup_lag_max_ms": 1000 * max(startup_lags),
        "polls": meter.polls,
        "errors": meter.errors,
        "polls_per_s": meter.polls / args.measure,
        "target_polls_per_s": args.triggers / args.interval,
        "cpu_ms_per_poll": 1000 * cpu_used / meter.polls if meter.polls else float("nan"),
        "cpu_share": cpu_used / args.measure,
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "kib_per_trigger": 1024 * (rss_after - rss_before) / args.triggers if args.triggers else 0.0,
        "lag_p99_ms": 1000 * window_lags[int(0.99 * (len(window_lags) - 1))],
        "lag_max_ms": 1000 * window_lags[-1],
        "gap_p50": statistics.median(gaps) / args.interval,
        "gap_p99": gaps[int(0.99 * (len(gaps) - 1))] / args.interval,
        "served": len(meter.served),
        "threads": threads,
        "gc_full_collections": sum(gen == 2 for gen, _ in window_collections),
        "gc_max_ms": 1000 * max((took for _, took in window_collections), default=0.0),
        "gc_objects": len(gc.get_objects()),
    }


async def wait_for_every_trigger(meter: Meter, args: argparse.Namespace, started: float) -> float | None:
    """Return the seconds until every trigger had polled once, or ``None`` past ``--max-startup``."""
    while len(meter.served) < args.triggers:
        if time.perf_counter() - started > args.max_startup:
            return None
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


# --- the driver: an emulator process, then one worker process per run ------------------------------------


def create_running_batches(base_url: str, count: int) -> list[str]:
    httpx.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()
    # The batches stay in_progress for the whole run.
    httpx.post(
        f"{base_url}/_emulator/faults", json={"processing_seconds": 86_000}, timeout=10
    ).raise_for_status()
    client = anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0)
    request = {
        "custom_id": "ticket-1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "my invoice shows a double charge"}],
        },
    }
    return [client.messages.batches.create(requests=[request]).id for _ in range(count)]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(
    variant: str, triggers: int, base_url: str, batch_file: Path, args: argparse.Namespace
) -> dict[str, Any]:
    out = batch_file.with_name(f"result-{variant}-{triggers}.json")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(batch_file.parent / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "claude-batch", "host": base_url, "password": API_KEY}
        ),
    }
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--variant",
        variant,
        "--triggers",
        str(triggers),
        "--interval",
        str(args.interval),
        "--warmup",
        str(args.warmup),
        "--max-startup",
        str(args.max_startup),
        "--measure",
        str(args.measure),
        "--base-url",
        base_url,
        "--batch-ids",
        str(batch_file),
        "--out",
        str(out),
    ]
    limit = args.max_startup + args.warmup + args.measure + 600
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=limit)
    return json.loads(out.read_text())


def _num(spec: str) -> Any:
    return lambda value: spec.format(value)


COLUMNS: list[tuple[str, Any]] = [
    ("variant", str),
    ("triggers", _num("{:,}")),
    ("interval_s", _num("{:g}")),
    ("startup_s", lambda value: "not all" if value is None else f"{value:.1f}"),
    ("startup_lag_max_ms", _num("{:.0f}")),
    ("polls_per_s", _num("{:.0f}")),
    ("target_polls_per_s", _num("{:.0f}")),
    ("cpu_ms_per_poll", _num("{:.2f}")),
    ("cpu_share", _num("{:.2f}")),
    ("kib_per_trigger", _num("{:.1f}")),
    ("lag_p99_ms", _num("{:.1f}")),
    ("lag_max_ms", _num("{:.1f}")),
    ("gap_p50", _num("{:.2f}")),
    ("gap_p99", _num("{:.2f}")),
    ("served", _num("{:,}")),
    ("gc_full_collections", str),
    ("gc_max_ms", _num("{:.0f}")),
    ("gc_objects", _num("{:,}")),
    ("server_cpu_share", _num("{:.2f}")),
    ("threads", str),
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(show(row[name]) for name, show in COLUMNS) + " |")
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> None:
    rows = []
    with (
        emulator_process(speed=None) as emulator,
        tempfile.TemporaryDirectory(prefix="bench-triggerer-") as scratch,
    ):
        base_url = emulator.base_url
        batch_file = Path(scratch) / "batch_ids.json"
        if "idle" in args.variants.split(","):
            batch_file.write_text(json.dumps(create_running_batches(base_url, 1)))
            rows.append({**run_worker("idle", 0, base_url, batch_file, args), "server_cpu_share": 0.0})
            print(json.dumps(rows[-1]), flush=True)
        for triggers in [int(n) for n in args.triggers.split(",")]:
            for variant in args.variants.split(","):
                if variant == "idle":
                    continue
                if variant == "async-per-trigger" and triggers > args.per_trigger_client_max:
                    # Building each client blocks the loop ~0.1 s: N of them, N x 0.1 s at start.
                    continue
                batch_file.write_text(json.dumps(create_running_batches(base_url, BATCHES)))
                server_cpu, wall = process_cpu_seconds(emulator.pid), time.monotonic()
                row = run_worker(variant, triggers, base_url, batch_file, args)
                row["server_cpu_share"] = (process_cpu_seconds(emulator.pid) - server_cpu) / (
                    time.monotonic() - wall
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nload average at the end: {os.getloadavg()}")
    print(table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--triggers", default="100,1000,5000", help="comma-separated N (default 100,1000,5000)"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds (default 5)")
    parser.add_argument(
        "--warmup", type=float, default=6.0, help="at least this many seconds before measuring (default 6)"
    )
    parser.add_argument(
        "--max-startup",
        type=float,
        default=90.0,
        help="measure anyway once this many seconds passed without every trigger having polled (default 90)",
    )
    parser.add_argument("--measure", type=float, default=20.0, help="seconds measured (default 20)")
    parser.add_argument(
        "--variants",
        default="ours,async-per-trigger,thread",
        help="of: idle, ours, async-per-trigger, thread",
    )
    parser.add_argument(
        "--per-trigger-client-max",
        type=int,
        default=200,
        help="run async-per-trigger only up to this N: its start alone blocks the loop N x 0.1 s",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--batch-ids", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.triggers = int(args.triggers)
        batch_ids = json.loads(Path(args.batch_ids).read_text())
        result = asyncio.run(worker(args, batch_ids))
        Path(args.out).write_text(json.dumps(result))
    else:
        drive(args)


if __name__ == "__main__":
    main()
