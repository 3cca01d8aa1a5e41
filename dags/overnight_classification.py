"""Nightly support-ticket triage with Claude Message Batches: submit at 18:00, labels by morning.

Every evening at 18:00 the day's tickets are labelled with one of six queues (billing, bug,
feature_request, account, shipping, other) at batch prices, half the synchronous price. The long
classifier prompt (``prompts/ticket_classifier.md``) is sent as a system block cached for an hour, so
after the first request of the run it is read from the cache at a tenth of the input price.

Where things are (set the Airflow Variables, or the environment variables ``AIRFLOW_VAR_<NAME>``):

- ``claude_batch_tickets``: the tickets, a JSONL / CSV / Parquet file or URI in which ``{date}``
  becomes the run's day (the day of its 18:00 cutoff), e.g. ``s3://support/tickets/{date}.jsonl``.
  Unset: the bundled sample ``data/tickets/sample.jsonl`` (3,000 tickets) for every day.
- ``claude_batch_storage``: the root of the run folders and outputs, e.g. ``s3://my-bucket/claude``.
  Unset: ``$AIRFLOW_HOME/claude-batch`` on the local disk.
- ``[claude_batch] storage_conn_id`` and ``source_conn_id`` (Airflow's configuration, or the
  environment variables ``AIRFLOW__CLAUDE_BATCH__STORAGE_CONN_ID`` /
  ``AIRFLOW__CLAUDE_BATCH__SOURCE_CONN_ID``): the Airflow connections for the storage and for the
  tickets, e.g. ``aws_default``; unset for local files. ``[claude_batch] poll_interval`` (or
  ``CLAUDE_BATCH_POLL_INTERVAL``): seconds between polls (default 60).
- The ``claude_batch_default`` connection: the API key, and a base URL for a gateway or the emulator.

Outputs of a run for day D: ``{storage}/labels/D.jsonl`` (one row per labelled ticket: ``custom_id``,
``label``, ``confidence``; updates the ``support_ticket_labels`` Asset), and the run folder
``{storage}/overnight_classification/{run_id}/`` with ``manifest.json`` and ``report.html``.

Parsing this file reads no file and calls no service: paths, dates and the prompt are templates
rendered when the tasks run.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, Param

try:  # Airflow 3.2+
    from airflow.sdk import CronTriggerTimetable
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf
    from airflow.timetables.trigger import CronTriggerTimetable

from airflow_claude_batch.pipeline import claude_batch_pipeline

TIMEZONE = "UTC"
LABELS = ("billing", "bug", "feature_request", "account", "shipping", "other")
MAX_ROUNDS = 3
MODEL = "claude-sonnet-4-6"
MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-8"]

SAMPLE_TICKETS = (Path(__file__).parent / "data" / "tickets" / "sample.jsonl").as_uri()
LOCAL_STORAGE = "file://" + os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")) + "/claude-batch"

# Templates, rendered when a task runs. The run's day is the date of its 18:00 cutoff in TIMEZONE (the
# end of its data interval); a run triggered without a logical date uses the time it was queued.
DAY = "((data_interval_end | default(none)) or dag_run.run_after) | local_day"
STORAGE = "{{ var.value.get('claude_batch_storage', '" + LOCAL_STORAGE + "') }}"
TICKETS = (
    "{{ (params.input_path or var.value.get('claude_batch_tickets', '" + SAMPLE_TICKETS + "'))"
    " | replace('{date}', " + DAY + ") }}"
)
# The report writes no labels after a dry run, so a dry run never replaces a day already labelled.
LABELS_URI = STORAGE + "/labels/{{ " + DAY + " }}.jsonl"
# Connections of the storage and of the tickets (e.g. aws_default), none for local files.
STORAGE_CONN_ID = "{{ conf.get('claude_batch', 'storage_conn_id', fallback='') or none }}"
SOURCE_CONN_ID = "{{ conf.get('claude_batch', 'source_conn_id', fallback='') or none }}"

# The answer must be one of the labels with a confidence; anything else is kept as invalid_output.
LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": list(LABELS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
}

ticket_labels = Asset(name="support_ticket_labels", group="claude_batch")


def local_day(moment: datetime) -> str:
    """Return the calendar day of ``moment`` in the DAG's time zone, as ``YYYY-MM-DD``."""
    return pendulum.instance(moment).in_timezone(TIMEZONE).to_date_string()


with DAG(
    dag_id="overnight_classification",
    description="Label the day's support tickets with Claude at batch prices, results by morning",
    # The run at 18:00 on day D covers the 24 hours before it and is named after D.
    schedule=CronTriggerTimetable("0 18 * * *", timezone=TIMEZONE, interval=timedelta(days=1)),
    start_date=pendulum.datetime(2026, 11, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    render_template_as_native_obj=True,
    user_defined_filters={"local_day": local_day},
    user_defined_macros={"conf": conf},  # Airflow's configuration, for the connection ids
    params={
        # Nullable, so the form treats the field as optional and its Trigger button stays enabled.
        "input_path": Param(
            None,
            type=["null", "string"],
            title="Input file",
            description="Tickets to label: a JSONL, CSV or Parquet path or URI (s3://..., gs://...) with "
            "`id` and `text` fields. `{date}` becomes the run's day. Leave empty for the nightly input "
            "(the Variable claude_batch_tickets, else the bundled sample).",
        ),
        "model": Param(
            MODEL,
            type="string",
            minLength=1,
            title="Model",
            description="Claude model for every request of the run. Models cache prompts of different "
            "minimum lengths; the classifier prompt is long enough for Sonnet and Opus.",
            examples=MODELS,
        ),
        "max_tokens": Param(
            64,
            type="integer",
            minimum=1,
            maximum=8192,
            title="Max output tokens",
            description="Output cap per ticket (a label takes about 20 tokens). The upper bound of the "
            "cost estimate counts the full cap.",
        ),
        "max_cost_usd": Param(
            25.0,
            type="number",
            minimum=0,
            title="Budget (USD)",
            description="Refuse to submit, spending nothing, when the estimate chosen below is above "
            "this. The estimate learns from earlier runs of this DAG.",
        ),
        "budget_basis": Param(
            "expected",
            type="string",
            enum=["expected", "upper"],
            title="Budget compares",
            description="`expected`: the expected cost (learned from earlier runs; the default). "
            "`upper`: the upper bound (no cache hit, every ticket using its max output tokens), a "
            "ceiling the run cannot pass.",
        ),
        "requeue_rounds": Param(
            MAX_ROUNDS - 1,
            type="integer",
            minimum=0,
            maximum=MAX_ROUNDS - 1,
            title="Requeue rounds",
            description="How many times expired or canceled requests are resubmitted after the first "
            f"batch (0 to {MAX_ROUNDS - 1}). What is still unfinished afterwards is listed in the "
            "run's pending.jsonl.",
        ),
        "on_input_change": Param(
            "fail",
            type="string",
            enum=["fail", "keep", "add_new"],
            title="If the input changed",
            description="What a rerun does when the input changed after batches were sent: `fail` "
            "(stop, spending nothing, and say what changed), `keep` (finish with what was built) or "
            "`add_new` (send only the records no run of this interval answered yet). To re-sweep after late "
            "data: `airflow backfill create ... --reprocess-behavior completed --dag-run-conf "
            '\'{"on_input_change": "add_new"}\'`.',
        ),
        "retry_errored_sync": Param(
            False,
            type="boolean",
            title="Retry errors synchronously",
            description="Send requests that failed with a retryable error once through the synchronous "
            "Messages API, at standard prices (twice the batch price), before requeueing those that "
            "still fail.",
        ),
        "replace_output": Param(
            False,
            type="boolean",
            title="Replace the day's labels",
            description="A run with another model, max tokens or prompt than the run that wrote the "
            "day's labels writes its labels into its own run folder, so an experiment never replaces "
            "them. Tick to replace them (and own them) on purpose.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Build and validate the requests and write the cost estimate, without submitting "
            "anything.",
        ),
    },
    tags=["claude", "batch", "classification"],
    doc_md=__doc__,
) as dag:
    # [START howto_claude_batch_pipeline]
    claude_batch_pipeline(
        "classify_tickets",
        source=TICKETS,
        storage=STORAGE,
        storage_conn_id=STORAGE_CONN_ID,
        source_conn_id=SOURCE_CONN_ID,
        custom_id_field="id",
        prompt_field="text",
        model="{{ params.model }}",
        max_tokens="{{ params.max_tokens }}",
        system="{% include 'prompts/ticket_classifier.md' %}",
        cache_system="1h",
        max_cost_usd="{{ params.max_cost_usd }}",
        budget_basis="{{ params.budget_basis }}",
        dry_run="{{ params.dry_run }}",
        max_rounds=MAX_ROUNDS,
        on_input_change="{{ params.on_input_change }}",
        retry_errored_sync="{{ params.retry_errored_sync }}",
        # Tickets from the form's input path are not the day's own: their labels stay in the run folder.
        custom_input="{{ params.input_path is not none and params.input_path | trim != '' }}",
        # Another model or max_tokens than the labels' owner: its own output, unless asked to replace.
        replace_output="{{ params.replace_output }}",
        requeue_rounds="{{ params.requeue_rounds }}",
        output_schema=LABEL_SCHEMA,
        output_uri=LABELS_URI,
        outlets=[ticket_labels],
    )
    # [END howto_claude_batch_pipeline]
