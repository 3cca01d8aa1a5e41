"""The build's parameters, declared once: ``ClaudeBatchBuildOperator`` and ``claude_batch_pipeline`` take
exactly these, with these defaults, and Airflow renders the templated ones.

A new build parameter is one field here (its default, its ``:param:`` row, whether it is templated),
one row in ``docs/operators.md`` for the operator and one for the pipeline, and the code that reads
it in the build operator's ``execute``; the pipeline passes it on unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.core.api.limits import MAX_BYTES_PER_SHARD, MAX_REQUESTS_PER_SHARD
from airflow_claude_batch.core.build.rejections import DEFAULT_MAX_REJECTED_FRACTION
from airflow_claude_batch.core.money.estimate import DEFAULT_BUDGET_BASIS
from airflow_claude_batch.core.requests.rendering import RenderCallable
from airflow_claude_batch.operators.options import REQUIRED, documented, option

SourceSpec = str | Sequence[str] | Callable[[], Iterable[Mapping[str, Any]]]


@dataclass(frozen=True)
class BuildOptions:
    """Everything the build task is given, as the DAG file gives it (templates not yet rendered).

    Values a template may give arrive as text when rendered (``"{{ params.budget }}"``); the build
    operator reads them back when it runs.
    """

    source: SourceSpec = option(
        REQUIRED,
        "the records: a URI or a glob (``s3://bucket/tickets/{{ ds }}/*.jsonl``), a list of them, or a "
        "callable that yields dicts. JSON Lines, CSV and Parquet (with pyarrow).",
    )
    storage: str = option(
        REQUIRED,
        "the root URI of run folders (``s3://bucket/claude-runs``); the run's files go to "
        "``{storage}/{dag_id}/{run_id}/{pipeline_id}/``.",
    )
    storage_conn_id: str | None = option(
        None, "the connection for ``storage`` (for example an AWS connection)."
    )
    source_conn_id: str | None = option(None, "the connection for ``source``.")
    conn_id: str = option(
        DEFAULT_CONN_ID, "the Claude connection, used to count tokens for the estimate when it can."
    )
    custom_id_field: str = option("id", "the record field that holds each record's id (kept exactly).")
    prompt_field: str = option("text", "the record field that holds the user turn.")
    render: RenderCallable | None = option(
        None,
        "a callable ``record -> Messages params`` used instead of ``prompt_field`` (multi-turn, images, "
        "tools); ``model``, ``max_tokens`` and ``system`` fill in what it leaves out.",
        templated=False,
    )
    model: str | None = option(None, "the model (``claude-sonnet-4-6``).")
    max_tokens: int | str = option(1024, "the output limit per request.")
    system: str | None = option(None, "a system prompt for every request.", renderer="md")
    cache_system: str | None = option(None, '``"5m"`` or ``"1h"`` to mark ``system`` for prompt caching.')
    max_requests_per_shard: int | str = option(
        MAX_REQUESTS_PER_SHARD,
        "requests per batch, at most 99,999 (the batch's marker request makes the API's 100,000).",
    )
    max_bytes_per_shard: int | str = option(
        MAX_BYTES_PER_SHARD, "create-body bytes per batch as sent, at most 256,000,000."
    )
    max_cost_usd: float | str | None = option(
        None, "fail before submitting when the estimate ``budget_basis`` names is higher."
    )
    expected_output_tokens: int | str | None = option(
        None,
        "the output a request is expected to use, for the expected cost when the pipeline has no "
        "earlier run to learn from.",
    )
    source_format: str | None = option(
        None, '``"jsonl"``, ``"csv"`` or ``"parquet"`` when file names do not tell.'
    )
    dry_run: bool | str = option(
        False, "validate and estimate (``estimate.json``) without writing shards; returns ``[]``."
    )
    prices_file: str | None = option(
        None,
        "a prices file over the shipped prices, a local path or a URI read with ``storage_conn_id`` "
        "(default: ``[claude_batch] prices_file`` or ``CLAUDE_BATCH_PRICES_FILE``).",
    )
    budget_basis: str = option(
        DEFAULT_BUDGET_BASIS,
        '``"expected"`` (the default) compares ``max_cost_usd`` with the expected cost, ``"upper"`` with '
        "the upper bound (no cache hit, every request at ``max_tokens``).",
    )
    retry_errored_sync: bool | str = option(
        False,
        "whether the run may retry errored requests synchronously at standard prices (the requeue's "
        "setting); the upper bound then prices every answer at standard prices.",
    )
    pipeline_id: str | None = option(
        None,
        "the pipeline's name in the run folder path; default: the id of the task group the task is in "
        "(``claude_batch_pipeline`` sets it), else ``claude_batch``. The report task of the same pipeline "
        "must use the same id.",
        templated=False,
    )
    on_input_change: str = option(
        "fail",
        "what a rerun does when the input (files, sizes, versions, request settings) changed after a "
        'shard was submitted: ``"fail"`` (default: stop, spending nothing, and say what changed), '
        '``"keep"`` (reuse the shards built, leave the change out) or ``"add_new"`` (send only the '
        "records neither this run nor an earlier run of the same data interval has answered). Unchanged "
        "input is reused and changed input with nothing submitted is rebuilt, whatever this says.",
    )
    on_invalid_record: str = option(
        "fail",
        'what a record the build cannot send does (templated): ``"fail"`` (default: the build stops before '
        "anything is spent, listing the first 20 bad records with their locations and rules in one "
        'message) or ``"skip"`` (each goes to the run\'s ``rejected.jsonl`` with its rule and location, '
        "counted as ``rejected`` in the manifest and the report; the others are sent).",
    )
    max_rejected_fraction: float | str = option(
        DEFAULT_MAX_REJECTED_FRACTION,
        'with ``on_invalid_record="skip"``, the largest share of rejected records (0 to 1): over it, or '
        "with every record rejected, the build fails before any batch is created.",
    )
    output_schema: Mapping[str, Any] | type | None = option(
        None,
        "a JSON-schema dict or a Pydantic model class the answers must satisfy; with "
        "``structured_output`` it is asked for in every request.",
        templated=False,
    )
    structured_output: str | None = option(
        None,
        'how the schema is asked for (templated): ``"native"`` (the API\'s ``output_config.format``; '
        'refused before spend for a model that lacks it), ``"tool"`` (one tool built from the schema, '
        'forced with ``tool_choice``), ``"text"`` (nothing added; the text is read as JSON). Default: '
        '``"native"`` where the model supports it, else ``"tool"``.',
    )
    check_model: bool | str = option(
        True,
        "ask the models endpoint, before anything is spent, that the model exists exactly as written "
        "and that ``max_tokens`` is within its output limit (templated). No answer from the endpoint is "
        "a warning; turn it off for a gateway that has no models endpoint.",
    )
    passthrough_fields: Sequence[str] | str | None = option(
        None,
        "record fields carried into every output row (``passthrough`` in the run-folder rows, beside "
        '``custom_id`` in the flat output), e.g. ``["title", "expected_label"]``; see '
        ":mod:`~airflow_claude_batch.core.requests.passthrough`.",
    )
    later_templates: Mapping[str, Any] | None = option(
        None,
        'the templated parameters of the tasks after the build, by name (``{"output_uri": ...}``): '
        "the build renders them for the run first, so that one that cannot render (``{{ ds }}`` in a "
        "run without a logical date) fails the build, naming it, before anything is spent. The "
        "pipeline passes its own.",
        templated=False,
    )


BuildOptions.__doc__ = documented(BuildOptions.__doc__ or "", BuildOptions)
