"""Label support tickets with Claude every day at batch prices: the whole pipeline in one call."""

from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_claude_batch.pipeline import claude_batch_pipeline

SAMPLE = (Path(__file__).parent / "data" / "tickets" / "sample.jsonl").as_uri()
STORAGE = "{{ var.value.get('claude_batch_storage', 'file:///tmp/claude-runs') }}"
DAY = "{{ dag_run.run_after | ds }}"  # the run's day, scheduled or triggered by hand

with DAG("quickstart", schedule="@daily", start_date=pendulum.datetime(2026, 11, 1), catchup=False) as dag:
    labels = claude_batch_pipeline(
        source="{{ var.value.get('claude_batch_tickets', '" + SAMPLE + "') }}",
        storage=STORAGE,
        model="claude-haiku-4-5",
        max_tokens=16,
        system='Label the support ticket. Answer in JSON: {"label": ..., "confidence": 0 to 1}.\n'
        "Labels: billing, bug, account, feature_request, shipping, other",
        max_cost_usd=10,
        output_uri=STORAGE + "/quickstart/labels-" + DAY + ".jsonl",
    )

    @task
    def announce(summary: dict) -> None:
        """Whatever comes next: the report's summary names the flat output and what it cost."""
        counts, cost = summary["dispositions"], summary["actual_cost_usd"]
        print(f"{counts['succeeded']} labelled for ${cost:.4f}: {summary['files']['output']}")

    announce(labels.output)
