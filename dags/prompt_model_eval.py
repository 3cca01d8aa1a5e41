"""Eval sweep: a new prompt or model, tried across the whole labelled regression set at batch prices.

Two models x two prompt variants run as four pipelines of one DAG run, each in its own run folder
(``{storage}/prompt_model_eval/{run_id}/{variant}/``), over the bundled regression set
``data/eval/labelled_tickets.jsonl`` (300 support tickets, each with the queue it belongs to in
``expected_label``). The expected label rides through to each output row (``passthrough_fields``), so
scoring needs no second join with the input. A final task writes the table of accuracy and cost:
``{storage}/eval/{run_id}/accuracy.json`` and ``accuracy.html``.

Set the Airflow Variable ``claude_batch_storage`` (e.g. ``s3://my-bucket/claude``; default:
``$AIRFLOW_HOME/claude-batch``), and ``claude_batch_eval_cases`` for another labelled set (JSONL with
``id``, ``text`` and ``expected_label``). Against the emulator the answers are deterministic and the
variants score differently (a ``haiku`` model slips on one answer in eight; the prompts list the labels
in different orders, which breaks ties differently).
"""

from __future__ import annotations

import html
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pendulum
from airflow.sdk import DAG, ObjectStoragePath, Param, task

try:  # Airflow 3.2+
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf

from airflow_claude_batch.pipeline import claude_batch_pipeline

LABELS = ("billing", "bug", "feature_request", "account", "shipping", "other")
MODELS = {"sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"}
PROMPTS = {"full": "prompts/ticket_classifier.md", "short": "prompts/ticket_classifier_short.md"}

SAMPLE_CASES = (Path(__file__).parent / "data" / "eval" / "labelled_tickets.jsonl").as_uri()
LOCAL_STORAGE = "file://" + os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")) + "/claude-batch"

# Templates, rendered when a task runs.
STORAGE = "{{ var.value.get('claude_batch_storage', '" + LOCAL_STORAGE + "') }}"
CASES = "{{ var.value.get('claude_batch_eval_cases', '" + SAMPLE_CASES + "') }}"
EVAL_DIR = STORAGE + "/eval/{{ run_id | replace(':', '_') | replace('+', '_') }}"
# The connection of the storage (e.g. aws_default), none for local files.
STORAGE_CONN_ID = "{{ conf.get('claude_batch', 'storage_conn_id', fallback='') or none }}"

LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(LABELS)},
        "confidence": {"type": "number"},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


@task
def score(
    reports: list[dict[str, Any]], variants: list[dict[str, str]], eval_dir: str, storage_conn_id: str | None
) -> dict[str, Any]:
    """Join each variant's output to the expected labels; write the accuracy-and-cost table."""
    rows = []
    for variant, report in zip(variants, reports, strict=True):
        output = ObjectStoragePath(report["files"]["output"], conn_id=storage_conn_id)
        answers = [orjson.loads(line) for line in output.read_bytes().splitlines() if line.strip()]
        correct = sum(1 for row in answers if row.get("label") == row.get("expected_label"))
        cases = report["input_records"]
        rows.append(
            {
                **variant,
                "cases": cases,
                "answered": len(answers),
                "correct": correct,
                "accuracy": round(correct / cases, 4) if cases else None,
                "cost_usd": round(report["actual_cost_usd"], 6),
                "synchronous_equivalent_usd": round(report["synchronous_equivalent_usd"], 6),
                "run_folder": report["run_uri"],
            }
        )
    rows.sort(key=lambda row: (-(row["accuracy"] or 0), row["cost_usd"]))
    table = {"schema_version": 1, "variants": rows}
    folder = ObjectStoragePath(eval_dir, conn_id=storage_conn_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accuracy.json").write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2))
    (folder / "accuracy.html").write_text(_page(rows), encoding="utf-8")
    return {"accuracy_json": str(folder / "accuracy.json"), "variants": rows}


def _page(rows: list[dict[str, Any]]) -> str:
    head = ("variant", "model", "prompt", "cases", "correct", "accuracy", "cost (USD)")
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(value))}</td>"
            for value in (
                row["variant"],
                row["model"],
                row["prompt"],
                row["cases"],
                row["correct"],
                f"{(row['accuracy'] or 0) * 100:.1f} %",
                f"{row['cost_usd']:.4f}",
            )
        )
        + "</tr>"
        for row in rows
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Eval sweep</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 10px;border-bottom:1px solid #ddd}"
        "td:nth-child(n+4){text-align:right}</style><h1>Eval sweep: accuracy and cost</h1><table><tr>"
        + "".join(f"<th>{html.escape(name)}</th>" for name in head)
        + f"</tr>{body}</table>"
    )


with DAG(
    dag_id="prompt_model_eval",
    description="Sweep two models and two prompts across the labelled regression set; score them",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    render_template_as_native_obj=True,
    user_defined_macros={"conf": conf},  # Airflow's configuration, for the connection id
    params={
        "retry_errored_sync": Param(
            False,
            type="boolean",
            title="Retry errors synchronously",
            description="Send requests that failed with a retryable error once through the synchronous "
            "Messages API at standard prices before requeueing them. Off by default.",
        ),
    },
    tags=["claude", "batch", "eval"],
    doc_md=__doc__,
) as dag:
    variants, reports = [], []
    for model_name, model in MODELS.items():
        for prompt_name, prompt in PROMPTS.items():
            variant = f"{model_name}_{prompt_name}"
            group = claude_batch_pipeline(
                variant,
                source=CASES,
                storage=STORAGE,
                storage_conn_id=STORAGE_CONN_ID,
                custom_id_field="id",
                prompt_field="text",
                model=model,
                max_tokens=64,
                system="{% include '" + prompt + "' %}",
                output_schema=LABEL_SCHEMA,
                passthrough_fields=["expected_label"],
                output_uri=EVAL_DIR + "/" + variant + ".jsonl",
                retry_errored_sync="{{ params.retry_errored_sync }}",
                max_rounds=2,
            )
            variants.append({"variant": variant, "model": model, "prompt": prompt_name})
            reports.append(group.output)
    score(reports, variants, EVAL_DIR, STORAGE_CONN_ID)
