"""Monthly moderation sweep: re-scan a month of user content against the current content policy.

Each run covers one calendar month (its data interval) and reads that month's partition of user
content, ``{month}`` = ``YYYY-MM``. Every item is judged by Claude against the versioned policy in
``prompts/moderation_policy_<version>.md`` (cached for an hour across the batch); requests that
expire are resubmitted, up to ``MAX_ROUNDS`` rounds in all.

Backfill past months with ``airflow backfill create --dag-id monthly_moderation_sweep --from-date
2026-08-01 --to-date 2026-10-31``: each month is its own run with its own run folder, and rerunning a
month resumes it instead of paying again (the build keeps ``round-0/shards.json``, the submit
re-attaches to its batches through their state files). A manual run needs a logical date: it sweeps
the last whole month before it.

Where things are (Airflow Variables, or the environment variables ``AIRFLOW_VAR_<NAME>``):

- ``claude_batch_content``: the monthly partitions, a URI in which ``{month}`` becomes ``YYYY-MM``,
  e.g. ``s3://ugc/posts/{month}.jsonl``. Unset: the bundled sample months 2026-08 to 2026-10.
- ``claude_batch_storage``: the root of run folders and outputs. Unset: ``$AIRFLOW_HOME/claude-batch``.
- ``[claude_batch] storage_conn_id`` and ``source_conn_id`` (Airflow's configuration, or the
  environment variables ``AIRFLOW__CLAUDE_BATCH__STORAGE_CONN_ID`` /
  ``AIRFLOW__CLAUDE_BATCH__SOURCE_CONN_ID``): the Airflow connections of the storage and of the
  content, if any.

Outputs per month, under ``{storage}/moderation/policy-<version>/``: ``verdicts/{month}.jsonl`` (every
item: ``custom_id``, ``verdict``, ``category``, ``reason``, ``policy_version``) and
``flags/{month}.jsonl`` (the flagged items only, for the moderators' queue; updates the
``moderation_flags`` Asset). The policy version is part of every path: a new policy sweeps every
month afresh and never overwrites the verdicts of an older one.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pendulum
from airflow.sdk import DAG, Asset, ObjectStoragePath, Param, task

try:  # Airflow 3.2+
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_claude_batch.pipeline import claude_batch_pipeline

TIMEZONE = "UTC"
POLICY_VERSION = "2026.11"
CATEGORIES = ("harassment", "spam", "violence", "self_harm", "none")
MAX_ROUNDS = 3
MODEL = "claude-sonnet-4-6"

SAMPLE_CONTENT = (Path(__file__).parent / "data" / "content").as_uri() + "/{month}.jsonl"
LOCAL_STORAGE = "file://" + os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")) + "/claude-batch"

# Templates, rendered when a task runs: the month is the start of the run's data interval.
MONTH = "data_interval_start.in_timezone('" + TIMEZONE + "').format('YYYY-MM')"
CONTENT = (
    "{{ var.value.get('claude_batch_content', '" + SAMPLE_CONTENT + "')"
    " | replace('{month}', " + MONTH + ") }}"
)
SWEEP_ROOT = (
    "{{ var.value.get('claude_batch_storage', '" + LOCAL_STORAGE + "') }}/moderation/policy-" + POLICY_VERSION
)
# The report writes no verdicts after a dry run, so a dry run never replaces a month already swept.
VERDICTS_URI = SWEEP_ROOT + "/verdicts/{{ " + MONTH + " }}.jsonl"
FLAGS_URI = SWEEP_ROOT + "/flags/{{ " + MONTH + " }}.jsonl"
# Connections of the storage and of the content (e.g. aws_default), none for local files.
STORAGE_CONN_ID = "{{ conf.get('claude_batch', 'storage_conn_id', fallback='') or none }}"
SOURCE_CONN_ID = "{{ conf.get('claude_batch', 'source_conn_id', fallback='') or none }}"

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["flag", "allow"]},
        "category": {"enum": list(CATEGORIES)},
        "reason": {"type": "string"},
        # An answer given under another policy is not a verdict of this sweep.
        "policy_version": {"const": POLICY_VERSION},
    },
    "required": ["verdict", "category", "reason", "policy_version"],
}

moderation_flags = Asset(name="moderation_flags", group="claude_batch")


@task(outlets=[moderation_flags])
def extract_flags(report: dict[str, Any], flags_uri: str, storage_conn_id: str | None) -> dict[str, Any]:
    """Write the month's flagged items to ``flags_uri``; return how many were flagged, by category.

    A dry run skips the report, and so this task: there are no verdicts to read.

    :param report: the pipeline's summary; its ``files["output"]`` holds the month's verdicts.
    :param flags_uri: where the flagged rows go, written in one piece once every verdict is read.
    :param storage_conn_id: the Airflow connection of the storage, if any.
    """
    with ObjectStoragePath(report["files"]["output"], conn_id=storage_conn_id).open("rb") as lines:
        verdicts = (orjson.loads(line) for line in lines if line.strip())
        flagged = [row for row in verdicts if row["verdict"] == "flag"]
    flags = ObjectStoragePath(flags_uri, conn_id=storage_conn_id)
    if flags.protocol == "file":  # object stores have no folders; "making" one could make a bucket
        flags.parent.mkdir(parents=True, exist_ok=True)
    flags.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in flagged))
    by_category = Counter(row["category"] for row in flagged)
    return {"flags_uri": flags_uri, "flagged": len(flagged), "by_category": dict(by_category)}


with DAG(
    dag_id="monthly_moderation_sweep",
    description=f"Re-scan each month of user content against content policy {POLICY_VERSION}",
    # Each run covers one whole month; it starts once the month is over.
    schedule=CronDataIntervalTimetable("@monthly", timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 8, 1, tz=TIMEZONE),
    catchup=True,
    max_active_runs=2,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    render_template_as_native_obj=True,
    user_defined_macros={"conf": conf},  # Airflow's configuration, for the connection ids
    params={
        "max_cost_usd": Param(
            50.0,
            type="number",
            minimum=0,
            title="Budget per month (USD)",
            description="Refuse to submit a month, spending nothing, when the estimate chosen below is "
            "above this. The estimate learns from the months already swept.",
        ),
        "budget_basis": Param(
            "expected",
            type="string",
            enum=["expected", "upper"],
            title="Budget compares",
            description="`expected`: the expected cost (learned from earlier months; the default). "
            "`upper`: the upper bound (no cache hit, every item using its max output tokens), a "
            "ceiling the month cannot pass.",
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
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Build the month's requests and estimate the cost without submitting anything.",
        ),
    },
    tags=["claude", "batch", "moderation"],
    doc_md=__doc__,
) as dag:
    sweep = claude_batch_pipeline(
        "moderate_month",
        source=CONTENT,
        storage=SWEEP_ROOT,
        storage_conn_id=STORAGE_CONN_ID,
        source_conn_id=SOURCE_CONN_ID,
        custom_id_field="id",
        prompt_field="text",
        model=MODEL,
        max_tokens=128,
        system="{% include 'prompts/moderation_policy_" + POLICY_VERSION + ".md' %}",
        cache_system="1h",
        max_cost_usd="{{ params.max_cost_usd }}",
        budget_basis="{{ params.budget_basis }}",
        dry_run="{{ params.dry_run }}",
        max_rounds=MAX_ROUNDS,
        on_input_change="{{ params.on_input_change }}",
        retry_errored_sync="{{ params.retry_errored_sync }}",
        output_schema=VERDICT_SCHEMA,
        output_uri=VERDICTS_URI,
    )
    extract_flags(sweep.output, FLAGS_URI, STORAGE_CONN_ID)
