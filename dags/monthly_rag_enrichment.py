"""Monthly RAG enrichment: a summary, keywords and likely questions for every chunk of a corpus, paid
for once per chunk, ever.

Each month the whole corpus (a JSON Lines file of chunks, ``{"id", "section", "title", "text"}``) is
enriched for the retrieval index. Most chunks have not changed since last month, so the pipeline runs
with ``reuse_answers``: before a request is sent, its key (the model and every param of the request,
the chunk's text included, never its id) is looked up in the answer store under the storage root. A
chunk answered before, by any month's run, is not sent again: its answer is copied into this month's
output at $0 and the manifest counts what it saved. A changed chunk is a new key, so it never gets a
stale answer; a new chunk is sent; another model or prompt sends everything again. Answers older than
``params.reuse_answers`` (default ``"180d"``) are bought again, so the index is refreshed twice a year
even where nothing changed.

The requests are rendered with ``temperature: 0``: one answer per chunk is wanted, not a sample. Leave
``reuse_answers`` off (``"False"`` in the trigger form) for work that samples several answers on
purpose.

Where things are (Airflow Variables, or the environment variables ``AIRFLOW_VAR_<NAME>``):

- ``claude_batch_corpus``: the corpus, e.g. ``s3://kb/handbook/chunks.jsonl``. Unset: the bundled
  sample handbook (``data/corpus/handbook.jsonl``).
- ``claude_batch_storage``: the root of run folders, of the answer store and of the outputs. Unset:
  ``$AIRFLOW_HOME/claude-batch``.

Output per month: ``{storage}/rag/enriched/{month}.jsonl``, one row per chunk: ``custom_id``,
``section``, ``title`` (carried from the input), ``summary``, ``keywords``, ``questions``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param

try:  # Airflow 3.2+
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_claude_batch.pipeline import claude_batch_pipeline

TIMEZONE = "UTC"
MODEL = "claude-haiku-4-5"
SAMPLE_CORPUS = (Path(__file__).parent / "data" / "corpus" / "handbook.jsonl").as_uri()
LOCAL_STORAGE = "file://" + os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")) + "/claude-batch"

CORPUS = "{{ var.value.get('claude_batch_corpus', '" + SAMPLE_CORPUS + "') }}"
# The answer store lives under this root ({root}/_answers/): every pipeline using the root shares it.
RAG_ROOT = "{{ var.value.get('claude_batch_storage', '" + LOCAL_STORAGE + "') }}/rag"
MONTH = "data_interval_start.in_timezone('" + TIMEZONE + "').format('YYYY-MM')"
ENRICHED_URI = RAG_ROOT + "/enriched/{{ " + MONTH + " }}.jsonl"

SYSTEM = (
    "You enrich chunks of a product handbook for a retrieval index. For the chunk given, write a one "
    "sentence summary, three to six keywords a user would search for, and two questions a user might "
    "ask that the chunk answers."
)
ENRICHMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "questions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["summary", "keywords", "questions"],
    "additionalProperties": False,
}


def render_chunk(record: dict[str, Any]) -> dict[str, Any]:
    """One chunk as a request: its section and title beside its text, at temperature 0 (one answer per
    chunk, reusable, not a sample). The model, ``max_tokens`` and the system prompt are filled in."""
    chunk = f"Section: {record['section']}\nTitle: {record['title']}\n\n{record['text']}"
    return {"messages": [{"role": "user", "content": chunk}], "temperature": 0}


with DAG(
    dag_id="monthly_rag_enrichment",
    description="Enrich every chunk of the corpus for retrieval; unchanged chunks reuse their answers",
    schedule=CronDataIntervalTimetable("@monthly", timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 11, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "reuse_answers": Param(
            "180d",
            type="string",
            title="Reuse answers",
            description="`180d` (the default): a chunk answered within 180 days by any run sharing the "
            "storage is not sent again. `True`: any age. `False`: send every chunk (a fresh answer "
            "for each).",
        ),
        "max_cost_usd": Param(
            20.0,
            type="number",
            minimum=0,
            title="Budget per month (USD)",
            description="Refuse to submit, spending nothing, when the expected cost of the chunks to "
            "send is above this. Reused chunks cost nothing and are not counted.",
        ),
    },
    tags=["claude", "batch", "rag"],
    doc_md=__doc__,
) as dag:
    claude_batch_pipeline(
        "enrich_chunks",
        source=CORPUS,
        storage=RAG_ROOT,
        custom_id_field="id",
        render=render_chunk,
        model=MODEL,
        max_tokens=512,
        system=SYSTEM,
        output_schema=ENRICHMENT_SCHEMA,
        passthrough_fields=["section", "title"],
        max_cost_usd="{{ params.max_cost_usd }}",
        reuse_answers="{{ params.reuse_answers }}",
        max_rounds=2,
        output_uri=ENRICHED_URI,
    )
