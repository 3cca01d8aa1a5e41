"""Side by side: this package against the official providers on the same work, in one run.

The official providers (``apache-airflow-providers-anthropic``, ``apache-airflow-providers-common-ai``)
are installed into a separate environment (``--anchors-venv``, created with ``uv`` when missing),
never into the project's. Every case runs in a fresh child process of the environment under test
(``bench/compare/run_case.py``) against one ``claude-batch-emulator`` on loopback:

1. end to end: a JSONL file of records to results on local storage, one ``dag.test()`` run on SQLite
   per child; wall time, peak RSS, bytes left in the metadata DB, create calls seen by the emulator.
   The three kinds run in turn (A/B/C, A/B/C, ...) so the ratios come from the same minutes;
2. the per-batch limit: what each official provider does with 100,001 inline requests;
7. parse time: our sample DAG against a DAG with 10,000 inline requests, parsed alternately in one
   process.

Writes ``bench/results/compare.json`` and ``bench/results/compare.md`` (machine, load, versions,
command). ``--quick`` is the size that fits a shared machine in minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.support import emulator_process

ROOT = Path(__file__).resolve().parent.parent
RUN_CASE = Path(__file__).resolve().parent / "compare" / "run_case.py"
RESULTS = Path(__file__).resolve().parent / "results"
API_KEY = "bench-key-compare"
ANCHORS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-anthropic==1.2.0",
    "apache-airflow-providers-common-ai==1.0.0",
)
KINDS = ("ours", "anthropic", "common_ai")
VERSION_PACKAGES = (
    "apache-airflow",
    "anthropic",
    "airflow-claude-batch",
    "apache-airflow-providers-anthropic",
    "apache-airflow-providers-common-ai",
)
TICKET_SENTENCE = "my invoice was charged twice and the app crashes when I open the billing page"


# --- environment -------------------------------------------------------------------------------------


def ensure_anchors_venv(venv: Path) -> Path:
    """Create the anchors environment when missing; return its interpreter."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"creating the anchors environment in {venv} (once)", flush=True)
    uv = shlex.split(os.environ.get("UV") or "uv")  # the Makefile passes its own uv command
    subprocess.run([*uv, "venv", "-q", "--python", "3.11", str(venv)], check=True)
    environment = {**os.environ, "VIRTUAL_ENV": str(venv)}
    subprocess.run([*uv, "pip", "install", "-q", *ANCHORS, "-e", str(ROOT)], check=True, env=environment)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        f"names = {list(VERSION_PACKAGES)!r}\n"
        "found = {}\n"
        "for name in names:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True).stdout)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "cpu": cpu,
        "python": sys.version.split()[0],
    }


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


# --- emulator ----------------------------------------------------------------------------------------


def emulator_call(base_url: str, method: str, path: str) -> dict[str, Any]:
    response = httpx.request(method, base_url + path, timeout=30)
    response.raise_for_status()
    return response.json()


# --- cases -------------------------------------------------------------------------------------------


def write_records(path: Path, count: int) -> None:
    """``count`` support tickets of about 150 bytes, ``{"id", "text"}``, deterministic."""
    words_of = TICKET_SENTENCE.split(" ")
    with path.open("wb") as out:
        for i in range(count):
            words = " ".join(words_of[(i + k) % len(words_of)] for k in range(12))
            out.write(orjson.dumps({"id": f"t-{i:07d}", "text": f"Ticket {i}: {words}."}) + b"\n")


def run_child(python: Path, case: str, workdir: Path, *extra: str, base_url: str) -> dict[str, Any]:
    command = [
        str(python),
        str(RUN_CASE),
        case,
        "--workdir",
        str(workdir),
        "--base-url",
        base_url,
        "--api-key",
        API_KEY,
        *extra,
    ]
    process = subprocess.run(command, capture_output=True, text=True, cwd=workdir.parent)
    if process.returncode != 0:
        tail = (process.stderr or process.stdout)[-3000:]
        return {"error": f"exit {process.returncode}", "stderr_tail": tail}
    result = json.loads(process.stdout.strip().splitlines()[-1])
    if result.get("state", "success") != "success":
        result["stderr_tail"] = (process.stderr + process.stdout)[-6000:]
    return result


def case_end_to_end(
    pythons: dict[str, Path],
    templates: dict[str, Path],
    scratch: Path,
    base_url: str,
    records: int,
    repeats: int,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, Any]:
    source = scratch / f"records-{records}.jsonl"
    write_records(source, records)
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for kind in kinds:
            workdir = scratch / f"e2e-{kind}-{repeat}"
            workdir.mkdir()
            emulator_call(base_url, "POST", "/_emulator/reset")
            loadavg = load()
            python = pythons[kind]
            result = run_child(
                python,
                "e2e",
                workdir,
                "--kind",
                kind,
                "--records",
                str(source),
                "--db-template",
                str(templates[kind]),
                base_url=base_url,
            )
            stats = emulator_call(base_url, "GET", "/_emulator/stats")
            result.update(repeat=repeat, kind=kind, load_before=loadavg, emulator=stats)
            print(f"  e2e {kind} #{repeat}: {summary_line(result)}", flush=True)
            runs.append(result)
            shutil.rmtree(workdir, ignore_errors=True)
    return {"records": records, "repeats": repeats, "runs": runs, "summary": summarize_e2e(runs, repeats)}


def summary_line(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed ({result['error']}): {result['stderr_tail'][-300:]!r}"
    return (
        f"{result['state']}, {result['wall_seconds']} s, {result['peak_rss_mib']} MiB, "
        f"{result['result_lines']} lines, xcom {result['db']['xcom_bytes']} B"
    )


def summarize_e2e(runs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in KINDS:
        ok = [run for run in runs if run["kind"] == kind and "error" not in run]
        if not any(run["kind"] == kind for run in runs):
            continue
        if not ok:
            summary[kind] = {
                "error": next(run for run in runs if run["kind"] == kind).get("stderr_tail", "")[-600:]
            }
            continue
        summary[kind] = {
            "successful_runs": sum(run["state"] == "success" for run in ok),
            "wall_seconds_median": round(statistics.median(run["wall_seconds"] for run in ok), 2),
            "parse_seconds_median": round(statistics.median(run["parse_seconds"] for run in ok), 2),
            "run_seconds_median": round(statistics.median(run["run_seconds"] for run in ok), 2),
            "peak_rss_mib_max": max(run["peak_rss_mib"] for run in ok),
            "result_lines": ok[-1]["result_lines"],
            "xcom_bytes": ok[-1]["db"]["xcom_bytes"],
            "serialized_dag_bytes": ok[-1]["db"]["serialized_dag_bytes"],
            "rendered_fields_bytes": ok[-1]["db"]["rendered_fields_bytes"],
            "db_growth_bytes": ok[-1]["db"]["db_file_bytes"],
            "create_calls": ok[-1]["emulator"].get("batches_created"),
        }
    ratios: dict[str, Any] = {}
    for anchor in ("anthropic", "common_ai"):
        pairs = [
            (mine, theirs)
            for mine in runs
            for theirs in runs
            if mine["kind"] == "ours"
            and theirs["kind"] == anchor
            and mine["repeat"] == theirs["repeat"]
            and "error" not in mine
            and "error" not in theirs
        ]
        if pairs:
            ratios[anchor] = {
                f"{measure}_anchor_over_ours": [
                    round(theirs[measure] / mine[measure], 2) for mine, theirs in pairs
                ]
                for measure in ("wall_seconds", "run_seconds", "peak_rss_mib")
            }
    summary["ratios_per_repeat"] = ratios
    return summary


def case_limits(python: Path, scratch: Path, base_url: str) -> dict[str, Any]:
    workdir = scratch / "limits"
    workdir.mkdir()
    emulator_call(base_url, "POST", "/_emulator/reset")
    result = run_child(python, "limits", workdir, "--count", "100001", base_url=base_url)
    result["emulator"] = emulator_call(base_url, "GET", "/_emulator/stats")
    return result


ANCHOR_PARSE_DAG = """
import json
import pendulum
from airflow.sdk import DAG
from airflow.providers.anthropic.operators.batch import AnthropicBatchOperator

with open({records!r}) as handle:
    RECORDS = [json.loads(line) for line in handle if line.strip()]

with DAG("inline_requests", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    AnthropicBatchOperator(
        task_id="submit_batch",
        requests=[
            {{"custom_id": r["id"], "params": {{"model": "claude-haiku-4-5", "max_tokens": 32,
              "messages": [{{"role": "user", "content": r["text"]}}]}}}}
            for r in RECORDS
        ],
    )
"""


def case_parse(python: Path, scratch: Path, base_url: str, inline: int, parses: int) -> dict[str, Any]:
    workdir = scratch / "parse"
    workdir.mkdir()
    source = scratch / f"records-parse-{inline}.jsonl"
    write_records(source, inline)
    anchor_dag = workdir / "inline_requests.py"
    anchor_dag.write_text(ANCHOR_PARSE_DAG.format(records=str(source)))
    ours_dag = ROOT / "dags" / "overnight_classification.py"
    result = run_child(
        python,
        "parse",
        workdir,
        "--parses",
        str(parses),
        "--ours-dag",
        str(ours_dag),
        "--anchor-dag",
        str(anchor_dag),
        base_url=base_url,
    )
    result["inline_requests"] = inline
    if "median_seconds" in result:
        medians = result["median_seconds"]
        result["ratio_anchor_over_ours"] = round(medians["anthropic"] / medians["ours"], 1)
    return result


# --- report ------------------------------------------------------------------------------------------


def _mib(value: int) -> str:
    return f"{value / 1024**2:.2f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Side by side: airflow-claude-batch and the official providers",
        "",
        f"Command: `{report['command']}`  ",
        f"Started {report['started']}; {report['machine']['nproc']} CPUs ({report['machine']['cpu']}), "
        f"{report['machine']['memory_gib']} GiB; load average {report['load']['start']} at the start, "
        f"{report['load']['end']} at the end (shared machine).  ",
        f"Versions, project env: {report['versions']['project']}  ",
        f"Versions, anchors env: {report['versions']['anchors']}",
        "",
    ]
    e2e = report["cases"].get("end_to_end")
    if e2e:
        lines += [
            f"## 1. End to end, {e2e['records']:,} records ({e2e['repeats']} rounds of A/B/C)",
            "",
            "| measure | ours (`claude_batch_pipeline`) "
            "| anthropic 1.2.0 (`AnthropicBatchOperator` + stream) | common-ai 1.0.0 (`LLMBatchOperator`) |",
            "|---|---:|---:|---:|",
        ]
        summary = e2e["summary"]
        rows = [
            ("successful runs", "successful_runs", str),
            ("wall seconds (median)", "wall_seconds_median", str),
            ("of which `dag.test()` (median)", "run_seconds_median", str),
            (
                "of which first import of the DAG file, Airflow's own import included",
                "parse_seconds_median",
                str,
            ),
            ("peak RSS of the DAG process, MiB", "peak_rss_mib_max", str),
            ("result lines on storage", "result_lines", lambda v: f"{v:,}"),
            ("XCom bytes", "xcom_bytes", lambda v: f"{v:,}"),
            ("serialized DAG bytes", "serialized_dag_bytes", lambda v: f"{v:,}"),
            ("rendered template fields bytes", "rendered_fields_bytes", lambda v: f"{v:,}"),
            ("metadata DB growth, MiB", "db_growth_bytes", _mib),
            ("create calls (emulator)", "create_calls", str),
        ]
        for label, key, fmt in rows:
            cells = []
            for kind in KINDS:
                entry = summary.get(kind)
                if entry is None:
                    cells.append("not run")
                elif "error" in entry:
                    cells.append("failed")
                else:
                    cells.append(fmt(entry[key]))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        for anchor, ratio in summary.get("ratios_per_repeat", {}).items():
            lines.append(
                f"- {anchor} / ours, per round: wall {ratio['wall_seconds_anchor_over_ours']}, "
                f"`dag.test()` {ratio['run_seconds_anchor_over_ours']}, "
                f"peak RSS {ratio['peak_rss_mib_anchor_over_ours']}"
            )
        lines.append("")
    limits = report["cases"].get("limits")
    if limits:
        lines += [f"## 2. {limits.get('requests', 100001):,} inline requests", ""]
        for anchor in ("anthropic", "common_ai"):
            entry = limits.get(anchor, {})
            lines.append(
                f"- {anchor}: {entry.get('outcome')} after {entry.get('seconds')} s: "
                f"`{entry.get('error', '')}`"
            )
        lines.append("")
    parse = report["cases"].get("parse")
    if parse and "median_seconds" in parse:
        lines += [
            f"## 7. Parse time ({parse['parses']} parses each, alternating, import + serialization)",
            "",
            "| DAG file | median seconds | serialized bytes |",
            "|---|---:|---:|",
            f"| dags/overnight_classification.py | {parse['median_seconds']['ours']} | "
            f"{parse['serialized_bytes']['ours']:,} |",
            f"| {parse['inline_requests']:,} inline requests (`AnthropicBatchOperator`) | "
            f"{parse['median_seconds']['anthropic']} | {parse['serialized_bytes']['anthropic']:,} |",
            "",
            f"Ratio: {parse['ratio_anchor_over_ours']}x.",
            "",
        ]
    return "\n".join(lines)


def rewrite_report(path: Path) -> None:
    """Recompute the summaries of a ``compare.json`` and write its ``compare.md`` next to it."""
    report = json.loads(path.read_text())
    e2e = report["cases"].get("end_to_end")
    if e2e:
        e2e["summary"] = summarize_e2e(e2e["runs"], e2e["repeats"])
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(report) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 records, 2 rounds, 5 parses")
    parser.add_argument("--records", type=int, default=None, help="records of case 1 (full: 100,000)")
    parser.add_argument("--repeats", type=int, default=None, help="A/B/C rounds of case 1 (full: 3)")
    parser.add_argument("--parses", type=int, default=None, help="parses of each DAG file (full: 20)")
    parser.add_argument("--inline", type=int, default=10_000, help="inline requests of the parse case")
    parser.add_argument("--cases", default="e2e,limits,parse", help="comma-separated: e2e, limits, parse")
    parser.add_argument("--kinds", default=",".join(KINDS), help="case 1's kinds: ours, anthropic, common_ai")
    parser.add_argument("--anchors-venv", type=Path, default=Path("/tmp/acb-anchors"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-from", type=Path, help="rewrite the Markdown of a compare.json, run nothing"
    )
    args = parser.parse_args()
    if args.report_from:
        rewrite_report(args.report_from)
        return
    records = args.records or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (2 if args.quick else 3)
    parses = args.parses or (5 if args.quick else 20)
    cases = set(args.cases.split(","))

    anchors_python = ensure_anchors_venv(args.anchors_venv)
    project_python = Path(sys.executable)
    pythons = {"ours": project_python, "anthropic": anchors_python, "common_ai": anchors_python}
    report: dict[str, Any] = {
        "command": "python -m bench compare " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "load": {"start": load()},
        "versions": {"project": versions(project_python), "anchors": versions(anchors_python)},
        "cases": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="acb-compare-"))
    try:
        with emulator_process(api_key=API_KEY) as emulator:
            base_url = emulator.base_url
            if "e2e" in cases:
                templates: dict[str, Path] = {}
                for env, python in (("project", project_python), ("anchors", anchors_python)):
                    workdir = scratch / f"template-{env}"
                    workdir.mkdir()
                    migrated = run_child(python, "migrate", workdir, base_url=base_url)
                    if "error" in migrated:
                        raise RuntimeError(f"airflow db migrate failed in the {env} environment: {migrated}")
                    templates[env] = Path(migrated["db"])
                by_kind = {
                    "ours": templates["project"],
                    "anthropic": templates["anchors"],
                    "common_ai": templates["anchors"],
                }
                print(f"case 1: end to end, {records:,} records, {repeats} rounds", flush=True)
                report["cases"]["end_to_end"] = case_end_to_end(
                    pythons, by_kind, scratch, base_url, records, repeats, tuple(args.kinds.split(","))
                )
            if "limits" in cases:
                print("case 2: 100,001 inline requests", flush=True)
                report["cases"]["limits"] = case_limits(anchors_python, scratch, base_url)
            if "parse" in cases:
                print(f"case 7: parse time, {parses} parses each", flush=True)
                report["cases"]["parse"] = case_parse(anchors_python, scratch, base_url, args.inline, parses)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["load"]["end"] = load()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "compare.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
