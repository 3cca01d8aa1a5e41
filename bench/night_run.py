"""One night's run of ``claude_batch_pipeline`` with ``dag.test()`` in this process, every task timed.

Run by ``bench/bench_night.py`` (``python -m bench night``); prints one JSON object on its last line
of stdout. ``dag.test()`` runs each task instance in this process, one after another, and runs a
deferred task's trigger in line, as the triggerer would, before resuming the task. Each task instance
is wrapped so that its wall time, CPU time, deferrals and time in triggers are recorded, and its peak
resident memory is read: the kernel's peak counter of this process is reset before the task
(``/proc/self/clear_refs``) and read after it (``VmHWM``), so the figure is this process's peak while
that task ran, Airflow's own footprint included.

Airflow reads its configuration at import, so the environment is set before anything imports it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.compare.run_case import set_airflow_env
from bench.support import status_kib

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 64  # room for the whole answer: one cut at max_tokens is invalid output
SYSTEM = "Label the support ticket. Answer in JSON.\nLabels: billing, bug, account, other"
DAG_ID = "night_bench"

DAG_TEXT = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.pipeline import claude_batch_pipeline

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": {retries}, "retry_delay": {retry_delay}}}) as dag:
    claude_batch_pipeline(
        source={source!r},
        storage={storage!r},
        model={model!r},
        max_tokens={max_tokens},
        system={system!r},
        cache_system="1h",
        max_requests_per_shard={shard_requests},
        max_rounds={max_rounds},
        poll_interval={poll_interval},
        deferrable={deferrable},
        output_uri={output!r},
    )
"""


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def measure_tasks(dag_module: Any, tasks: list[dict[str, Any]]) -> None:
    """Wrap ``dag.test()``'s task runner and inline trigger runner to record each task instance.

    :param dag_module: ``airflow.sdk.definitions.dag``, whose module-level helpers ``dag.test()`` calls.
    :param tasks: where one dict per task instance is appended when it finishes.
    """
    run_task = dag_module._run_task
    run_trigger = dag_module._run_inline_trigger
    current: dict[str, Any] = {}

    def timed_trigger(trigger: Any, task_sdk_ti: Any) -> Any:
        started = time.time()
        try:
            return run_trigger(trigger, task_sdk_ti)
        finally:
            current.setdefault("triggers", []).append([started, time.time()])

    def timed_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        current.clear()
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
        start_rss = status_kib("VmRSS")
        cpu = time.process_time()
        started = time.time()
        try:
            return run_task(ti=ti, task=task, run_triggerer=run_triggerer)
        finally:
            tasks.append(
                {
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "try_number": ti.try_number,
                    "state": str(getattr(ti.state, "value", ti.state)),
                    "start": started,
                    "end": time.time(),
                    "cpu_seconds": round(time.process_time() - cpu, 3),
                    "start_rss_mib": _mib(start_rss),
                    "peak_rss_mib": _mib(status_kib("VmHWM")),
                    "deferrals": len(current.get("triggers", [])),
                    "trigger_seconds": round(
                        sum(end - start for start, end in current.get("triggers", [])), 3
                    ),
                    "triggers": current.get("triggers", []),
                }
            )

    dag_module._run_task = timed_task
    dag_module._run_inline_trigger = timed_trigger


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    home = workdir / "home"
    set_airflow_env(home, args.base_url, args.api_key)
    dag_file = home / "dags" / f"{DAG_ID}.py"
    dag_file.write_text(
        DAG_TEXT.format(
            dag_id=DAG_ID,
            retries=args.retries,
            retry_delay=f"pendulum.duration(seconds={args.retry_delay!r})",
            source=f"file://{args.records}",
            storage=f"file://{workdir / 'runs'}",
            model=MODEL,
            max_tokens=MAX_TOKENS,
            system=SYSTEM,
            shard_requests=args.shard_requests,
            max_rounds=args.max_rounds,
            poll_interval=args.poll_interval,
            deferrable=args.deferrable,
            output=f"file://{workdir / 'labels.jsonl'}",
        )
    )
    import importlib.util

    started = time.time()
    spec = importlib.util.spec_from_file_location("_night_bench_dag", dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    import airflow.sdk.definitions.dag as dag_module

    tasks: list[dict[str, Any]] = []
    measure_tasks(dag_module, tasks)
    dag_started = time.time()
    dag_run = module.dag.test()
    finished = time.time()
    return {
        "dag_state": str(dag_run.state),
        "started": started,
        "dag_started": dag_started,
        "finished": finished,
        "tasks": tasks,
        "task_states": {
            f"{ti.task_id}[{ti.map_index}]": str(getattr(ti.state, "value", ti.state))
            for ti in dag_run.get_task_instances()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--records", required=True, help="the input file of JSON Lines records")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--shard-requests", type=int, required=True)
    parser.add_argument("--max-rounds", type=int, required=True)
    parser.add_argument("--poll-interval", type=float, required=True)
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--retry-delay", type=float, default=30.0)
    parser.add_argument("--deferrable", type=lambda text: text == "True", default=True)
    result = run(parser.parse_args())
    print("\n" + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
