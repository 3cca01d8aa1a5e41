"""A night at scale, simulated: the whole pipeline over N records against the emulator with API limits.

    python -m bench night --records 1000000
    python -m bench night --quick          # a smoke run: 2,000 records in 4 shards

Writes N synthetic tickets (``{"id", "text"}``, about 1 KB of text each) to one JSON Lines file,
streamed line by line; starts ``claude-batch-emulator`` in its own process with a realistic queue
limit and per-minute limit (tier 4 by default: 500,000 waiting requests, 4,000 calls a minute) and a
fast processing speed, so that a night fits in minutes; then runs ``claude_batch_pipeline`` through
its operators with ``dag.test()`` in a fresh process (``bench/night_run.py``): build, rounds of
submit, wait (deferred: the trigger runs in line), fan out and requeue, then the report.

Reports: shards per round, batches, API calls by endpoint (the emulator's counters, calls refused
with 429 included), each task instance's wall time, CPU time, deferrals and peak memory, and the run's
wall time split into the API's own processing (the union of every batch's ``created_at`` to
``ended_at``) and the time outside it, by where it goes: the build, submits, waiting and polling after
a batch has ended, fanout, requeue, the report, and Airflow's own work between tasks. Writes
``night-<records>.json`` and ``night-<records>.md`` into ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from airflow_claude_batch.core.api.limits import MAX_REQUESTS_PER_SHARD
from bench.bench_build import make_input
from bench.support import API_KEY, emulator_process

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"records": 2_000, "shard_requests": 500, "speed": 2_000.0, "poll_interval": 0.5}
# Where a task's time goes, by the last part of its task id.
PHASES = {
    "build": "build",
    "submit": "submit",
    "wait": "waiting/polling",
    "submit deferred": "submit, deferred (waiting for the queue)",
    "fanout": "collect/route (fanout)",
    "may_requeue": "requeue",
    "requeue": "requeue",
    "report": "report",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench night", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="input records (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 records, 500 a shard, 2,000/s")
    parser.add_argument("--text-bytes", type=int, default=1000, help="text per record (default 1000)")
    parser.add_argument(
        "--shard-requests", type=int, default=MAX_REQUESTS_PER_SHARD, help="most requests per shard"
    )
    parser.add_argument(
        "--queue-limit", type=int, default=500_000, help="emulator's queue limit, requests (0: none)"
    )
    parser.add_argument("--rpm-limit", type=int, default=4_000, help="emulator's calls a minute (0: none)")
    parser.add_argument(
        "--speed", type=float, default=2_000.0, help="requests a batch processes per second (default 2,000)"
    )
    parser.add_argument("--error-rate", type=float, default=0.01, help="share of requests ending errored")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--max-rounds", type=int, default=2, help="rounds, the first submission included")
    parser.add_argument("--retries", type=int, default=0, help="Airflow retries of each task")
    parser.add_argument("--retry-delay", type=float, default=30.0, help="seconds before a retry")
    parser.add_argument("--no-deferrable", action="store_true", help="wait in the task, not in a trigger")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "night")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.quick:  # the smoke run's sizes, unless given on the command line
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    return args


def machine() -> dict[str, Any]:
    memory = next(
        line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory.split()[1]) / 2**20, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def emulator_args(args: argparse.Namespace) -> list[str]:
    # Always passed: without them the emulator enforces the API's tier-1 limits (0 turns one off).
    return [
        "--error-rate",
        repr(args.error_rate),
        "--queue-limit",
        str(args.queue_limit or 0),
        "--rpm-limit",
        str(args.rpm_limit or 0),
    ]


def run_dag(args: argparse.Namespace, workdir: Path, source: Path, base_url: str) -> dict[str, Any]:
    """Run the DAG in a fresh process; return its figures, its peak RSS and the last error in its log."""
    log_path = workdir / "dag.log"
    command = [sys.executable, "-m", "bench.night_run", "--workdir", str(workdir), "--records", str(source)]
    command += ["--base-url", base_url, "--api-key", API_KEY, "--shard-requests", str(args.shard_requests)]
    command += ["--max-rounds", str(args.max_rounds), "--poll-interval", repr(args.poll_interval)]
    command += ["--retries", str(args.retries), "--retry-delay", repr(args.retry_delay)]
    command += ["--deferrable", str(not args.no_deferrable)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    text = log_path.read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the DAG process failed; its log: {log_path}\n{text[-3000:]}")
    figures = json.loads(text.strip().splitlines()[-1])
    figures["process_peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    body = text[: text.rstrip().rfind("\n")]
    errors = re.findall(r"^\S*(?:Error|Exception): .*$", body, re.MULTILINE)
    figures["last_error"] = errors[-1][:500] if errors else None
    if figures["dag_state"] != "success":
        figures["log"] = body
    return figures


def api_figures(base_url: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The emulator's counters, then every batch (listed after the counters are read)."""
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        stats = client.get("/_emulator/stats").raise_for_status().json()
        batches: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            page = client.get("/v1/messages/batches", params=params).raise_for_status().json()
            batches += page["data"]
            if not page["has_more"]:
                break
            params["after_id"] = page["last_id"]
    stats.pop("last_create_body_bytes", None)
    return stats, batches


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge overlapping intervals; return them sorted and disjoint."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(start: float, end: float, busy: list[tuple[float, float]]) -> float:
    """Seconds of ``[start, end]`` inside the disjoint intervals ``busy``."""
    return sum(max(0.0, min(end, b_end) - max(start, b_start)) for b_start, b_end in busy)


def breakdown(dag: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Split the run's wall time into the API's processing and, outside it, where the rest goes."""
    begin, finish = dag["dag_started"], dag["finished"]
    processing = [(_seconds(b["created_at"]), _seconds(b["ended_at"])) for b in batches if b["ended_at"]]
    busy = union([(max(s, begin), min(e, finish)) for s, e in processing if e > begin and s < finish])
    busy_seconds = sum(end - start for start, end in busy)
    phases: dict[str, dict[str, float]] = {}
    for task in dag["tasks"]:
        kind = task["task_id"].rsplit(".", 1)[-1]
        own = PHASES.get(kind, "other tasks")
        # A task's time goes to its phase, except its time in triggers when it is not a wait: a submit
        # deferred until the queue has room is waiting, not submitting.
        deferred = [] if kind == "wait" else task["triggers"]
        parts = [(own, task["start"], task["end"], 1.0)]
        parts += [(PHASES.get(f"{kind} deferred", f"{kind}, deferred"), s, e, 1.0) for s, e in deferred]
        parts += [(own, s, e, -1.0) for s, e in deferred]
        for name, start, end, sign in parts:
            phase = phases.setdefault(name, {"wall_seconds": 0.0, "outside_api_seconds": 0.0})
            phase["wall_seconds"] += sign * (end - start)
            phase["outside_api_seconds"] += sign * (end - start - overlap(start, end, busy))
    total = finish - begin
    outside = total - busy_seconds
    in_tasks = sum(phase["outside_api_seconds"] for phase in phases.values())
    between = total - sum(phase["wall_seconds"] for phase in phases.values())
    phases["Airflow between tasks (retry delays included)"] = {
        "wall_seconds": between,
        "outside_api_seconds": outside - in_tasks,
    }
    return {
        "dag_wall_seconds": total,
        "dag_file_import_seconds": begin - dag["started"],
        "api_processing_seconds": busy_seconds,
        "api_processing_sum_seconds": sum(end - start for start, end in processing),
        "outside_api_seconds": outside,
        "phases": {name: {k: round(v, 2) for k, v in figures.items()} for name, figures in phases.items()},
    }


def per_task(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task id: instances, wall time (sum and longest), CPU, deferrals, tries, peak RSS."""
    rows: dict[str, dict[str, Any]] = {}
    for task in tasks:
        row = rows.setdefault(
            task["task_id"],
            {"task_id": task["task_id"], "instances": 0, "wall_seconds": 0.0, "longest_seconds": 0.0},
        )
        wall = task["end"] - task["start"]
        row["instances"] += 1
        row["wall_seconds"] = round(row["wall_seconds"] + wall, 2)
        row["longest_seconds"] = round(max(row["longest_seconds"], wall), 2)
        row["cpu_seconds"] = round(row.get("cpu_seconds", 0.0) + task["cpu_seconds"], 2)
        row["deferrals"] = row.get("deferrals", 0) + task["deferrals"]
        row["trigger_seconds"] = round(row.get("trigger_seconds", 0.0) + task["trigger_seconds"], 2)
        row.setdefault("map_indexes", set()).add(task["map_index"])
        row["peak_rss_mib"] = max(row.get("peak_rss_mib", 0.0), task["peak_rss_mib"])
        row["start_rss_mib"] = max(row.get("start_rss_mib", 0.0), task["start_rss_mib"])
        row["states"] = sorted(set(row.get("states", [])) | {task["state"]})
    for row in rows.values():  # each try is a run of its own; a resumption after deferral is not
        row["extra_tries"] = row["instances"] - len(row.pop("map_indexes"))
        row["instances"] -= row["extra_tries"]
    return list(rows.values())


def shards_per_round(tasks: list[dict[str, Any]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for task in tasks:
        parts = task["task_id"].split(".")
        if parts[-1] == "submit":
            found[parts[-2]] = found.get(parts[-2], 0) + 1
    return found


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the settings, then the tables."""
    settings, split = report["settings"], report["time"]
    lines = [
        f"# A night at scale: {settings['records']:,} records",
        "",
        f"Command: `{report['command']}`  ",
        f"Started {report['started_utc']}; {report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory_gib']} GiB; load average {report['machine']['load_average']} "
        "at the start, "
        f"{report['load_average_end']} at the end.  ",
        f"Emulator: queue limit {settings['queue_limit'] or 'none'}, {settings['rpm_limit'] or 'no'} calls a "
        f"minute, {settings['speed']:,.0f} requests/s per batch, error rate {settings['error_rate']}; "
        f"poll interval {settings['poll_interval']} s, deferrable {not settings['no_deferrable']}.",
        "",
        f"DAG run: **{report['dag_state']}**; input {report['input_mb']:,.0f} MB, written in "
        f"{report['input_seconds']:.1f} s (not counted); shards per round {report['shards_per_round']}; "
        f"batches created {report['api_calls'].get('batches_created', 0)}; "
        f"labels written {report['output_lines']:,}; peak RSS of the DAG process "
        f"{report['process_peak_rss_mib']:,.0f} MiB.",
        "",
        f"Last error in the log: `{report['last_error']}`"
        if report["last_error"]
        else "No error in the log.",
        "",
        "API calls (emulator counters): "
        + ", ".join(f"{name} {count:,}" for name, count in report["api_calls"].items() if count),
        "",
        "| task | instances | wall s (sum) | longest s | CPU s | deferrals | in trigger s | extra tries "
        "| peak RSS MiB | RSS at start MiB | states |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["per_task"]:
        lines.append(
            f"| {row['task_id']} | {row['instances']} | {row['wall_seconds']:.1f} "
            f"| {row['longest_seconds']:.1f} "
            f"| {row['cpu_seconds']:.1f} | {row['deferrals']} | {row['trigger_seconds']:.1f} "
            f"| {row['extra_tries']} | {row['peak_rss_mib']:,.0f} | {row['start_rss_mib']:,.0f} "
            f"| {', '.join(row['states'])} |"
        )
    lines += [
        "",
        f"Wall time of `dag.test()`: {split['dag_wall_seconds']:.1f} s (the DAG file's import before it: "
        f"{split['dag_file_import_seconds']:.1f} s). The API's own processing (union of the batches' "
        f"`created_at` to `ended_at`): {split['api_processing_seconds']:.1f} s "
        f"(sum over batches {split['api_processing_sum_seconds']:.1f} s). Outside it: "
        f"{split['outside_api_seconds']:.1f} s, going to:",
        "",
        "| where | wall s | outside the API's processing, s |",
        "|---|---:|---:|",
    ]
    for name, figures in split["phases"].items():
        lines.append(f"| {name} | {figures['wall_seconds']:.1f} | {figures['outside_api_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    command = "python -m bench night " + " ".join(sys.argv[1:])
    started_utc = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    report: dict[str, Any] = {"command": command.strip(), "started_utc": started_utc, "machine": machine()}
    report["settings"] = {name: value for name, value in vars(args).items() if name not in ("out", "workdir")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-night-", dir=args.workdir))
    try:
        source = workdir / "tickets.jsonl"
        clock = time.perf_counter()
        make_input(source, args.records, args.text_bytes)
        report["input_seconds"] = time.perf_counter() - clock
        report["input_mb"] = source.stat().st_size / 1e6
        migrate = [sys.executable, str(ROOT / "bench" / "compare" / "run_case.py"), "migrate"]
        subprocess.run([*migrate, "--workdir", str(workdir)], check=True, capture_output=True, cwd=ROOT)
        with emulator_process(speed=args.speed, extra_args=emulator_args(args)) as emulator:
            dag = run_dag(args, workdir, source, emulator.base_url)
            stats, batches = api_figures(emulator.base_url)
        report.update(
            dag_state=dag["dag_state"],
            task_states=dag["task_states"],
            process_peak_rss_mib=dag["process_peak_rss_mib"],
            last_error=dag["last_error"],
            shards_per_round=shards_per_round(dag["tasks"]),
            api_calls=stats,
            batches=[{k: b[k] for k in ("id", "created_at", "ended_at", "request_counts")} for b in batches],
            per_task=per_task(dag["tasks"]),
            tasks=dag["tasks"],
            time=breakdown(dag, batches),
            output_lines=count_lines(workdir / "labels.jsonl"),
            load_average_end=[round(value, 2) for value in os.getloadavg()],
        )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"night-{args.records}"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    (args.out / f"{name}.md").write_text(text)
    if "log" in dag:
        (args.out / f"{name}.log").write_text(dag["log"])
        print(f"the run failed; its log: {args.out / name}.log")
    print(text)


if __name__ == "__main__":
    main()
