"""What importing the pipeline adds to Airflow's own import: the cost of every DAG-file parse.

    python -m bench dag_import --runs 15

Each run is a fresh interpreter (nothing cached in ``sys.modules``), in two kinds, alternated so that
the machine's load falls on both alike:

- ``airflow``: ``import airflow.sdk`` alone;
- ``pipeline``: ``import airflow.sdk`` then ``import airflow_claude_batch.pipeline`` (what a DAG file
  calling ``claude_batch_pipeline`` imports).

Reported, as medians over the runs: the interpreter's whole wall time for each kind and their
difference, and, measured inside the ``pipeline`` runs, the wall and CPU seconds of the second import
alone (CPU time moves least when other work shares the machine). ``--source DIR`` puts a checkout of
the package first on ``sys.path``, to measure another version (e.g. ``git archive`` of an older commit)
with the same interpreter and Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Printed by the child: wall and CPU seconds of each import, and the heavy packages it loaded.
_CHILD = """
import json, sys, time
HEAVY = ("anthropic", "pydantic", "pyarrow", "jsonschema", "httpx", "tenacity")
w0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
w1, c1 = time.perf_counter(), time.process_time()
before = set(sys.modules)
if sys.argv[1] == "pipeline":
    import airflow_claude_batch.pipeline
w2, c2 = time.perf_counter(), time.process_time()
added = {m.partition(".")[0] for m in set(sys.modules) - before} - {m.partition(".")[0] for m in before}
print(json.dumps({
    "airflow_wall": w1 - w0, "airflow_cpu": c1 - c0, "added_wall": w2 - w1, "added_cpu": c2 - c1,
    "heavy_added": sorted(name for name in HEAVY if name in added),
    "modules_added": len(set(sys.modules) - before),
}))
"""


def _run_child(kind: str, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind], env=env, cwd=os.sep, check=True, capture_output=True, text=True
    ).stdout  # run from / : the current folder, first on sys.path, must not shadow --source
    result = json.loads(out.strip().splitlines()[-1])
    result["interpreter_wall"] = time.perf_counter() - started
    return result


def measure(runs: int, source: str | None) -> dict[str, object]:
    """Alternate ``runs`` fresh interpreters of each kind; return the medians (seconds)."""
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    samples: dict[str, list[dict]] = {"airflow": [], "pipeline": []}
    for kind in ("airflow", "pipeline"):  # one warm-up each: bytecode caches, the disk cache
        _run_child(kind, env)
    for _ in range(runs):
        for kind in ("airflow", "pipeline"):
            samples[kind].append(_run_child(kind, env))

    def median(kind: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[kind]), 3)

    pipeline = samples["pipeline"][-1]
    return {
        "runs": runs,
        "source": source or "installed",
        "interpreter_airflow_s": median("airflow", "interpreter_wall"),
        "interpreter_pipeline_s": median("pipeline", "interpreter_wall"),
        "interpreter_difference_s": round(
            median("pipeline", "interpreter_wall") - median("airflow", "interpreter_wall"), 3
        ),
        "import_airflow_sdk_wall_s": median("airflow", "airflow_wall"),
        "import_pipeline_wall_s": median("pipeline", "added_wall"),
        "import_pipeline_cpu_s": median("pipeline", "added_cpu"),
        "heavy_packages_added": pipeline["heavy_added"],
        "modules_added": pipeline["modules_added"],
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters of each kind")
    parser.add_argument("--source", help="a checkout of the package to measure instead of the installed one")
    args = parser.parse_args()
    print(json.dumps(measure(args.runs, args.source), indent=2))


if __name__ == "__main__":
    main()
