"""One comparison case in a fresh process; prints one JSON object on its last line of stdout.

Run by ``bench/bench_compare.py`` with the interpreter of the environment under test:

- ``e2e KIND``: one DAG run with ``dag.test()`` in an isolated ``AIRFLOW_HOME`` on SQLite, from a JSONL
  file of records to results on local storage. ``KIND`` is ``ours`` (``claude_batch_pipeline``),
  ``anthropic`` (``AnthropicBatchOperator`` with the requests inline, then a task that streams
  ``AnthropicHook.stream_batch_results`` into a JSONL file) or ``common_ai`` (``LLMBatchOperator``,
  which lands its own JSONL). Reports wall time, peak RSS, and what the run left in the metadata DB.
- ``limits``: what each official provider does with 100,001 inline requests.
- ``parse``: time N parses of two DAG files in this one process, alternating.

Airflow reads its configuration at import, so the environment is set before anything imports it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 32
SYSTEM = "Label the support ticket with one word: billing, bug, feature_request, account, shipping, other."
START = "pendulum.datetime(2026, 1, 1, tz='UTC')"

OURS_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.pipeline import claude_batch_pipeline

with DAG("cmp_ours", schedule=None, start_date={start}, default_args={{"retries": 0}}) as dag:
    claude_batch_pipeline(
        source={source!r},
        storage={storage!r},
        model={model!r},
        max_tokens={max_tokens},
        system={system!r},
        max_rounds=2,
        poll_interval=0.5,
        output_uri={output!r},
    )
"""

# The official provider's documented style: the requests are a Python list given to the operator (a
# template field), built here from the same JSONL file when the file is parsed.
ANTHROPIC_DAG = """
import json
import pendulum
from airflow.sdk import DAG, task
from airflow.providers.anthropic.hooks.anthropic import AnthropicHook
from airflow.providers.anthropic.operators.batch import AnthropicBatchOperator

with open({records!r}) as handle:
    RECORDS = [json.loads(line) for line in handle if line.strip()]

REQUESTS = [
    {{
        "custom_id": record["id"],
        "params": {{
            "model": {model!r},
            "max_tokens": {max_tokens},
            "system": {system!r},
            "messages": [{{"role": "user", "content": record["text"]}}],
        }},
    }}
    for record in RECORDS
]

with DAG("cmp_anthropic", schedule=None, start_date={start}, default_args={{"retries": 0}}) as dag:
    submit = AnthropicBatchOperator(
        task_id="submit_batch", requests=REQUESTS, poll_interval=0.5, deferrable=False
    )

    @task
    def store_results(batch_id: str) -> str:
        # The provider returns the batch id only; writing results is the user's code.
        # Keep the hook referenced while streaming: the client it owns closes its connection when the
        # hook is garbage collected, mid-stream ("Bad file descriptor").
        hook = AnthropicHook()
        path = {output!r}
        with open(path, "w") as out:
            for result in hook.stream_batch_results(batch_id):
                out.write(result.model_dump_json() + "\\n")
        return path

    store_results(submit.output)
"""

COMMON_AI_DAG = """
import json
import pendulum
from airflow.sdk import DAG
from airflow.providers.common.ai.operators.llm_batch import LLMBatchOperator

with open({records!r}) as handle:
    PROMPTS = [json.loads(line)["text"] for line in handle if line.strip()]

with DAG("cmp_common_ai", schedule=None, start_date={start}, default_args={{"retries": 0}}) as dag:
    LLMBatchOperator(
        task_id="classify",
        requests=PROMPTS,
        result_path={result_path!r},
        llm_conn_id="pydanticai_default",
        model_id="anthropic:" + {model!r},
        system_prompt={system!r},
        max_tokens={max_tokens},
        poll_interval=30,
        deferrable=False,
    )
"""


def set_airflow_env(home: Path, base_url: str, api_key: str) -> None:
    """Point Airflow at ``home`` (SQLite there) and every connection at the emulator."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP"] = "airflow_claude_batch\\..*"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    for name, conn_type in (
        ("CLAUDE_BATCH_DEFAULT", "claude_batch"),
        ("ANTHROPIC_DEFAULT", "anthropic"),
        ("PYDANTICAI_DEFAULT", "pydanticai"),
    ):
        connection = {"conn_type": conn_type, "host": base_url, "password": api_key}
        os.environ[f"AIRFLOW_CONN_{name}"] = json.dumps(connection)


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# By path: this file runs in the anchors environment too, where ``bench`` is not a package to import.
support = load_module(Path(__file__).resolve().parent.parent / "support.py", "bench_support")


def write_dag(kind: str, dag_file: Path, records: Path, workdir: Path) -> tuple[str, Path]:
    """Write the DAG file of ``kind``; return its dag_id and where its results land."""
    common = {"start": START, "model": MODEL, "max_tokens": MAX_TOKENS, "system": SYSTEM}
    if kind == "ours":
        output = workdir / "out.jsonl"
        text = OURS_DAG.format(
            source=f"file://{records}",
            storage=f"file://{workdir / 'runs'}",
            output=f"file://{output}",
            **common,
        )
        dag_file.write_text(text)
        return "cmp_ours", output
    if kind == "anthropic":
        output = workdir / "results.jsonl"
        dag_file.write_text(ANTHROPIC_DAG.format(records=str(records), output=str(output), **common))
        return "cmp_anthropic", output
    if kind == "common_ai":
        result_dir = workdir / "common_ai"
        text = COMMON_AI_DAG.format(records=str(records), result_path=f"file://{result_dir}", **common)
        dag_file.write_text(text)
        return "cmp_common_ai", result_dir
    raise ValueError(f"unknown kind {kind!r}: choose ours, anthropic or common_ai")


def count_result_lines(output: Path) -> int:
    files = sorted(output.rglob("*.jsonl")) if output.is_dir() else [output]
    files = [path for path in files if path.exists() and "state" not in path.name]
    return sum(sum(1 for line in path.open("rb") if line.strip()) for path in files)


def metadata_bytes(db_file: Path) -> dict[str, int]:
    """What the run left in the metadata DB: XCom values, serialized DAG, rendered template fields."""
    queries = {
        "xcom_bytes": "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM xcom",
        "serialized_dag_bytes": "SELECT COALESCE(SUM(COALESCE(LENGTH(data), 0) + "
        "COALESCE(LENGTH(data_compressed), 0)), 0) FROM serialized_dag",
        "rendered_fields_bytes": "SELECT COALESCE(SUM(LENGTH(rendered_fields)), 0) "
        "FROM rendered_task_instance_fields",
    }
    with sqlite3.connect(db_file) as db:
        found = {name: int(db.execute(query).fetchone()[0]) for name, query in queries.items()}
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    found["db_file_bytes"] = int(page_size * pages)
    return found


def run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    home = workdir / "home"
    set_airflow_env(home, args.base_url, args.api_key)
    shutil.copy(args.db_template, home / "airflow.db")
    db_before = metadata_bytes(home / "airflow.db")
    dag_file = home / "dags" / f"cmp_{args.kind}.py"
    dag_id, output = write_dag(args.kind, dag_file, Path(args.records), workdir)

    started = time.perf_counter()
    module = load_module(dag_file, f"_cmp_{args.kind}")
    dag = module.dag
    parsed = time.perf_counter()
    dag_run = dag.test()
    finished = time.perf_counter()

    states: dict[str, int] = {}
    for ti in dag_run.get_task_instances():
        states[str(ti.state)] = states.get(str(ti.state), 0) + 1
    db_after = metadata_bytes(home / "airflow.db")
    return {
        "kind": args.kind,
        "dag_id": dag_id,
        "state": str(dag_run.state),
        "task_states": states,
        "parse_seconds": round(parsed - started, 3),
        "run_seconds": round(finished - parsed, 3),
        "wall_seconds": round(finished - started, 3),
        "peak_rss_mib": round(support.status_kib("VmHWM") / 1024, 1),
        "result_lines": count_result_lines(output),
        "db": {
            name: db_after[name] - (db_before[name] if name == "db_file_bytes" else 0) for name in db_after
        },
    }


def run_limits(args: argparse.Namespace) -> dict[str, Any]:
    """Show where each official provider stops on 100,001 inline requests."""
    home = Path(args.workdir) / "home"
    set_airflow_env(home, args.base_url, args.api_key)
    count = args.count
    requests = [
        {
            "custom_id": f"r-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": "hi"}],
            },
        }
        for i in range(count)
    ]
    found: dict[str, Any] = {"requests": count}

    from airflow.providers.anthropic.hooks.anthropic import AnthropicHook

    started = time.perf_counter()
    try:
        batch = AnthropicHook().create_batch(requests)
        found["anthropic"] = {"outcome": "accepted", "batch_id": batch.id}
    except Exception as error:  # the error is what this case reports
        found["anthropic"] = {"outcome": "raised", "error": f"{type(error).__name__}: {error}"[:400]}
    found["anthropic"]["seconds"] = round(time.perf_counter() - started, 2)

    from airflow.providers.common.ai.batch.anthropic import AnthropicBatchAdapter
    from airflow.providers.common.ai.batch.base import BatchRequest
    from airflow.providers.common.ai.batch.output_schema import build_output_spec

    adapter = AnthropicBatchAdapter(api_key=args.api_key, base_url=args.base_url)
    normalized = [BatchRequest(prompt="hi") for _ in range(count)]
    started = time.perf_counter()
    try:
        adapter.validate_requests(
            normalized, model=MODEL, output_spec=build_output_spec(str), idempotency_key="k" * 16
        )
        found["common_ai"] = {"outcome": "accepted"}
    except Exception as error:
        found["common_ai"] = {"outcome": "raised", "error": f"{type(error).__name__}: {error}"[:400]}
    found["common_ai"]["seconds"] = round(time.perf_counter() - started, 2)
    return found


def _parse_once(path: Path, name: str, serialize: Any) -> tuple[float, int]:
    started = time.perf_counter()
    module = load_module(path, name)
    dag = next(
        value for value in vars(module).values() if hasattr(value, "dag_id") and hasattr(value, "tasks")
    )
    size = len(json.dumps(serialize(dag), default=str))
    return time.perf_counter() - started, size


def run_parse(args: argparse.Namespace) -> dict[str, Any]:
    """Parse two DAG files N times each, alternating, as the DAG processor does (import + serialize)."""
    home = Path(args.workdir) / "home"
    set_airflow_env(home, args.base_url, args.api_key)
    from airflow.serialization.serialized_objects import DagSerialization

    files = {"ours": Path(args.ours_dag), "anthropic": Path(args.anchor_dag)}
    for label, path in files.items():  # warm: first imports of the packages are not a parse's cost
        _parse_once(path, f"_warm_{label}", DagSerialization.to_dict)
    times: dict[str, list[float]] = {label: [] for label in files}
    sizes: dict[str, int] = {}
    for index in range(args.parses):
        for label, path in files.items():
            gc.collect()
            seconds, size = _parse_once(path, f"_parse_{label}_{index}", DagSerialization.to_dict)
            times[label].append(seconds)
            sizes[label] = size
    return {
        "parses": args.parses,
        "median_seconds": {label: round(statistics.median(values), 4) for label, values in times.items()},
        "all_seconds": {label: [round(value, 4) for value in values] for label, values in times.items()},
        "serialized_bytes": sizes,
        "peak_rss_mib": round(support.status_kib("VmHWM") / 1024, 1),
    }


def run_migrate(args: argparse.Namespace) -> dict[str, Any]:
    """Create the SQLite metadata DB once; every run starts from a copy of it."""
    home = Path(args.workdir) / "home"
    set_airflow_env(home, args.base_url, args.api_key)
    import subprocess

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return {"db": str(home / "airflow.db"), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", choices=["e2e", "limits", "parse", "migrate"])
    parser.add_argument("--kind", default="ours")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--base-url", default="http://127.0.0.1:1")
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--records")
    parser.add_argument("--db-template")
    parser.add_argument("--count", type=int, default=100_001)
    parser.add_argument("--parses", type=int, default=10)
    parser.add_argument("--ours-dag")
    parser.add_argument("--anchor-dag")
    args = parser.parse_args()
    handlers = {"e2e": run_e2e, "limits": run_limits, "parse": run_parse, "migrate": run_migrate}
    result = handlers[args.case](args)
    sys.stdout.flush()
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
