"""The build task: records on object storage (or from a callable) → validated shards and an estimate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api import MAX_BYTES_PER_SHARD, MAX_REQUESTS_PER_SHARD
from airflow_claude_batch.core.build import DEFAULT_MAX_REJECTED_FRACTION
from airflow_claude_batch.core.money import DEFAULT_BUDGET_BASIS
from airflow_claude_batch.core.requests import CallableRecords
from airflow_claude_batch.core.run import RunFolder
from airflow_claude_batch.exceptions import BeforeSubmitError, ConnectionConfigError, InputError
from airflow_claude_batch.lineage import LineageMixin
from airflow_claude_batch.operators.build_options import SourceSpec
from airflow_claude_batch.operators.task_inputs import (
    answer_store_for,
    flag,
    load_prices,
    optional_number,
    optional_text,
    optional_whole_number,
    pipeline_id_of,
    run_folder_for,
    whole_number,
)

if TYPE_CHECKING:
    from airflow_claude_batch.core.money import RunCost, TokenCounter
    from airflow_claude_batch.core.requests import RecordSource, RenderCallable, RequestTemplate


class ClaudeBatchBuildOperator(LineageMixin, BaseOperator):
    """Render records into Message Batch requests, validate them and write round 0's shards.

    Reads the records as a stream, so a run of millions of records takes the memory of one record
    and a write buffer. Everything is checked before anything is spent: ids (the API's rule, unique
    across the run), params, sizes, and the cost against ``max_cost_usd``. Writes
    ``round-0/shard-*.requests.jsonl``, ``estimate.json`` and, last, ``round-0/shards.json``; a rerun
    of the same run returns that list without rebuilding, so shards that may have been submitted
    never change. Returns one ``ShardDescriptor`` dict per shard (never requests), ``[]`` in a dry
    run. The parameters ``template_fields`` names are templated (the column "templated" of
    ``docs/operators.md``); ``claude_batch_pipeline`` takes the same parameters but ``pipeline_id`` and
    ``later_templates`` (:class:`~airflow_claude_batch.operators.build_options.BuildOptions`).

    :param source: the records: a URI or a glob (``s3://bucket/tickets/{{ ds }}/*.jsonl``), a list of
        them, or a callable that yields dicts. JSON Lines, CSV and Parquet (with pyarrow).
    :param storage: the root URI of run folders (``s3://bucket/claude-runs``); the run's files go to
        ``{storage}/{dag_id}/{run_id}/{pipeline_id}/``.
    :param storage_conn_id: the connection for ``storage`` (for example an AWS connection).
    :param source_conn_id: the connection for ``source``.
    :param conn_id: the Claude connection, used to count tokens for the estimate when it can.
    :param custom_id_field: the record field that holds each record's id (kept exactly).
    :param prompt_field: the record field that holds the user turn.
    :param render: a callable ``record -> Messages params`` used instead of ``prompt_field`` (multi-turn,
        images, tools); ``model``, ``max_tokens`` and ``system`` fill in what it leaves out.
    :param model: the model (``claude-sonnet-4-6``).
    :param max_tokens: the output limit per request.
    :param system: a system prompt for every request.
    :param cache_system: ``"5m"`` or ``"1h"`` to mark ``system`` for prompt caching.
    :param max_requests_per_shard: requests per batch, at most 99,999 (the batch's marker request makes
        the API's 100,000). Shards are filled in order and the last two evened out: 100,000 records make
        50,000 + 50,000.
    :param max_bytes_per_shard: create-body bytes per batch as sent, at most 256,000,000.
    :param max_cost_usd: fail before submitting when the estimate ``budget_basis`` names is higher.
    :param expected_output_tokens: the output a request is expected to use, for the expected cost when the
        pipeline has no earlier run to learn from.
    :param source_format: ``"jsonl"``, ``"csv"`` or ``"parquet"`` when file names do not tell.
    :param dry_run: validate and estimate (``estimate.json``) without writing shards; returns ``[]``.
    :param prices_file: a prices file over the shipped prices, a local path or a URI read with
        ``storage_conn_id`` (default: ``[claude_batch] prices_file`` or ``CLAUDE_BATCH_PRICES_FILE``).
    :param budget_basis: ``"expected"`` (the default) compares ``max_cost_usd`` with the expected cost,
        ``"upper"`` with the upper bound (no cache hit, every request at ``max_tokens``).
    :param retry_errored_sync: whether the run may retry errored requests synchronously at standard prices
        (the requeue's setting); the upper bound then prices every answer at standard prices.
    :param pipeline_id: the pipeline's name in the run folder path; default: the id of the task group the
        task is in (``claude_batch_pipeline`` sets it), else ``claude_batch``. The report task of the same
        pipeline must use the same id.
    :param on_input_change: what a rerun does when the input (files, sizes, versions, request settings)
        changed after a shard was submitted: ``"fail"`` (default: stop, spending nothing, and say what
        changed), ``"keep"`` (reuse the shards built, leave the change out) or ``"add_new"`` (send only
        the records neither this run nor an earlier run of the same data interval has answered). Unchanged
        input is reused and changed input with nothing submitted is rebuilt, whatever this says.
    :param on_invalid_record: what a record the build cannot send does (templated): ``"fail"`` (default:
        the build stops before anything is spent, listing the first 20 bad records with their locations
        and rules in one message) or ``"skip"`` (each goes to the run's ``rejected.jsonl`` with its rule
        and location, counted as ``rejected`` in the manifest and the report; the others are sent).
    :param max_rejected_fraction: with ``on_invalid_record="skip"``, the largest share of rejected records
        (0 to 1): over it, or with every record rejected, the build fails before any batch is created.
    :param output_schema: a JSON-schema dict or a Pydantic model class the answers must satisfy; with
        ``structured_output`` it is asked for in every request.
    :param structured_output: how the schema is asked for (templated): ``"native"`` (the API's
        ``output_config.format``; refused before spend for a model that lacks it), ``"tool"`` (one tool
        built from the schema, forced with ``tool_choice``), ``"text"`` (nothing added; the text is read
        as JSON). Default: ``"native"`` where the model supports it, else ``"tool"``.
    :param check_model: ask the models endpoint, before anything is spent, that the model exists exactly
        as written and that ``max_tokens`` is within its output limit (templated). No answer from the
        endpoint is a warning; turn it off for a gateway that has no models endpoint.
    :param passthrough_fields: record fields carried into every output row (``passthrough`` in the
        run-folder rows, beside ``custom_id`` in the flat output), e.g. ``["title", "expected_label"]``;
        see :mod:`~airflow_claude_batch.core.requests.passthrough`.
    :param reuse_answers: answer a request from the answer store under ``storage`` (templated): ``True``
        (its model and params, after the build's additions, match an answer any run sharing ``storage``
        bought: not sent, $0 in this run), a maximum age (``"30d"``), or ``False`` (default). Leave it
        off to sample several answers on purpose, or with a temperature above 0.
    :param later_templates: the templated parameters of the tasks after the build, by name
        (``{"output_uri": ...}``): the build renders them for the run first, so that one that cannot
        render (``{{ ds }}`` in a run without a logical date) fails the build, naming it, before anything
        is spent. The pipeline passes its own.
    """

    # Values a template gives arrive as text once rendered ("{{ params.budget }}"): ``execute`` reads
    # them back with ``task_inputs``' readers.
    template_fields: Sequence[str] = (
        "source",
        "storage",
        "storage_conn_id",
        "source_conn_id",
        "conn_id",
        "custom_id_field",
        "prompt_field",
        "model",
        "max_tokens",
        "system",
        "cache_system",
        "max_requests_per_shard",
        "max_bytes_per_shard",
        "max_cost_usd",
        "expected_output_tokens",
        "source_format",
        "dry_run",
        "prices_file",
        "budget_basis",
        "retry_errored_sync",
        "on_input_change",
        "on_invalid_record",
        "max_rejected_fraction",
        "structured_output",
        "check_model",
        "passthrough_fields",
        "reuse_answers",
    )
    template_fields_renderers = {"system": "md"}
    ui_color = "#f0e4d7"

    def __init__(
        self,
        *,
        source: SourceSpec,
        storage: str,
        storage_conn_id: str | None = None,
        source_conn_id: str | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        custom_id_field: str = "id",
        prompt_field: str = "text",
        render: RenderCallable | None = None,
        model: str | None = None,
        max_tokens: int | str = 1024,
        system: str | None = None,
        cache_system: str | None = None,
        max_requests_per_shard: int | str = MAX_REQUESTS_PER_SHARD,
        max_bytes_per_shard: int | str = MAX_BYTES_PER_SHARD,
        max_cost_usd: float | str | None = None,
        expected_output_tokens: int | str | None = None,
        source_format: str | None = None,
        dry_run: bool | str = False,
        prices_file: str | None = None,
        budget_basis: str = DEFAULT_BUDGET_BASIS,
        retry_errored_sync: bool | str = False,
        pipeline_id: str | None = None,
        on_input_change: str = "fail",
        on_invalid_record: str = "fail",
        max_rejected_fraction: float | str = DEFAULT_MAX_REJECTED_FRACTION,
        output_schema: Mapping[str, Any] | type | None = None,
        structured_output: str | None = None,
        check_model: bool | str = True,
        passthrough_fields: Sequence[str] | str | None = None,
        reuse_answers: bool | str = False,
        later_templates: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Airflow calls callables found in template fields while rendering them; wrapped, the user's
        # callable is called only when the records are read.
        self.source: Any = CallableRecords(source) if callable(source) else source
        self.storage = storage
        self.storage_conn_id = storage_conn_id
        self.source_conn_id = source_conn_id
        self.conn_id = conn_id
        self.custom_id_field = custom_id_field
        self.prompt_field = prompt_field
        self.render = render
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.cache_system = cache_system
        self.max_requests_per_shard = max_requests_per_shard
        self.max_bytes_per_shard = max_bytes_per_shard
        self.max_cost_usd = max_cost_usd
        self.expected_output_tokens = expected_output_tokens
        self.source_format = source_format
        self.dry_run = dry_run
        self.prices_file = prices_file
        self.budget_basis = budget_basis
        self.retry_errored_sync = retry_errored_sync
        self.pipeline_id = pipeline_id
        self.on_input_change = on_input_change
        self.on_invalid_record = on_invalid_record
        self.max_rejected_fraction = max_rejected_fraction
        self.output_schema = output_schema
        self.structured_output = structured_output
        self.check_model = check_model
        self.passthrough_fields = passthrough_fields
        self.reuse_answers = reuse_answers
        self.later_templates = later_templates

    def execute(self, context: Any) -> list[dict[str, Any]]:
        # The build's machinery is imported when the task runs, not when a DAG file is parsed.
        from airflow_claude_batch.core.build import (
            InvalidRecordPolicy,
            build_run,
            fingerprint_input,
            parse_on_input_change,
        )
        from airflow_claude_batch.core.money import EstimateOptions
        from airflow_claude_batch.core.requests import ShardLimits, parse_fields, write_passthrough

        try:
            self._render_later_templates(context)
            self._require_connection()
            source, template = self._record_source(), self._template()
            self._check_model(template)
            carried = parse_fields(self.passthrough_fields)
            folder = self._run_folder(context)
            result = build_run(
                source,
                template,
                folder,
                limits=ShardLimits(
                    whole_number(self.max_requests_per_shard, "max_requests_per_shard"),
                    whole_number(self.max_bytes_per_shard, "max_bytes_per_shard"),
                ),
                options=EstimateOptions(
                    expected_output_tokens=optional_whole_number(
                        self.expected_output_tokens, "expected_output_tokens"
                    ),
                    max_cost_usd=optional_number(self.max_cost_usd, "max_cost_usd"),
                    budget_basis=optional_text(self.budget_basis) or DEFAULT_BUDGET_BASIS,
                    retry_errored_sync=flag(self.retry_errored_sync, "retry_errored_sync"),
                ),
                prices=load_prices(self.prices_file, self.storage_conn_id),
                count_tokens=self._token_counter(),
                dry_run=flag(self.dry_run, "dry_run"),
                fingerprint=fingerprint_input(
                    source,
                    template,
                    data_interval=_data_interval(context),
                    settings={"source_format": optional_text(self.source_format)},
                ),
                on_input_change=parse_on_input_change(self.on_input_change),
                history=self._history(context),
                invalid_records=InvalidRecordPolicy.parse(self.on_invalid_record, self.max_rejected_fraction),
                answer_store=answer_store_for(self.reuse_answers, folder.storage_root),
            )
            if carried and (result.shard_dicts() or result.reused_requests):
                write_passthrough(folder, source, template.custom_id_field, carried)
        except BeforeSubmitError as exc:
            # Bad input or over budget: retrying cannot help and nothing was spent.
            raise AirflowFailException(str(exc)) from exc
        shards = result.shard_dicts()
        self.record_lineage(getattr(source, "paths", ()), [shard["uri"] for shard in shards])
        return shards

    def _record_source(self) -> RecordSource:
        from airflow_claude_batch.core.requests import FileRecords, expand_glob, split_glob

        if isinstance(self.source, CallableRecords):
            return self.source
        uris = [self.source] if isinstance(self.source, str) else list(self.source)
        paths: list[Any] = []
        for uri in uris:
            if not isinstance(uri, str) or not uri.strip():
                raise InputError(f"source must be a URI, a list of URIs or a callable, got {uri!r}")
            base, pattern = split_glob(uri.strip())
            root = ObjectStoragePath(base, conn_id=self.source_conn_id)
            paths.extend(expand_glob(root, pattern) if pattern else [root])
        return FileRecords(paths, optional_text(self.source_format))

    def _template(self) -> RequestTemplate:
        from airflow_claude_batch.core.requests import RequestTemplate, choose_mode, request_additions

        model = optional_text(self.model)
        mode = choose_mode(optional_text(self.structured_output), self.output_schema, model)
        if mode is not None:
            self.log.info("output_schema is asked for with structured_output=%r", mode)
        return RequestTemplate(
            custom_id_field=self.custom_id_field,
            prompt_field=self.prompt_field,
            model=optional_text(self.model),
            max_tokens=whole_number(self.max_tokens, "max_tokens"),
            system=optional_text(self.system),
            cache_system=optional_text(self.cache_system),
            render=self.render,
            additions=request_additions(mode, self.output_schema) or None,
            **self._request_headers(),
        )

    def _render_later_templates(self, context: Any) -> None:
        """Render the later tasks' templates now: one that cannot render fails before any spend."""
        for name, template in (self.later_templates or {}).items():
            try:
                self.render_template(template, context)
            except Exception as exc:
                raise InputError(
                    f"{name}={template!r} cannot be rendered for run {context.get('run_id')!r} "
                    f"({type(exc).__name__}: {exc}); nothing was spent. A run without a logical date "
                    "(a manual or REST trigger that gives none) has no ds, ds_nodash, logical_date or "
                    "data_interval_start: use {{ run_id }}, or {{ dag_run.run_after | ds }}, or trigger "
                    "the run with a logical date"
                ) from exc

    def _require_connection(self) -> None:
        """Fail now, naming the connection and how to add it, rather than at the submit; a dry run,
        which calls nothing, only warns."""
        if not self.conn_id:
            return
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        try:
            ClaudeBatchHook(conn_id=self.conn_id).settings  # noqa: B018 (reading it is the check)
        except ConnectionConfigError as exc:
            if not flag(self.dry_run, "dry_run"):
                raise
            self.log.warning("dry run: %s", exc)

    def _request_headers(self) -> dict[str, Any]:
        """The connection's ``anthropic-version`` and betas, which some of the API's rules depend on."""
        if not self.conn_id:
            return {}
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        try:
            settings = ClaudeBatchHook(conn_id=self.conn_id).settings
        except Exception as exc:  # no connection here: the rules run under the default version
            self.log.info("connection %r not read for the request rules (%s)", self.conn_id, exc)
            return {}
        return {"anthropic_version": settings.anthropic_version, "betas": tuple(settings.betas)}

    def _check_model(self, template: RequestTemplate) -> None:
        from airflow_claude_batch.core.api import check_model

        if template.model is None or not flag(self.check_model, "check_model") or not self.conn_id:
            return
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        hook = ClaudeBatchHook(conn_id=self.conn_id)
        try:
            check_model(
                template.model,
                template.max_tokens,
                hook.get_model_info,
                endpoint=self.conn_id,
                betas=template.betas,
            )
        finally:
            hook.close()

    def _run_folder(self, context: Any) -> RunFolder:
        return run_folder_for(
            context, self.storage, self.storage_conn_id, pipeline_id_of(self, self.pipeline_id)
        )

    def _history(self, context: Any) -> list[RunCost]:
        from airflow_claude_batch.core.money import pipeline_history

        root = ObjectStoragePath(self.storage.strip(), conn_id=self.storage_conn_id)
        pipeline_id = pipeline_id_of(self, self.pipeline_id)
        return pipeline_history(root, context["ti"].dag_id, pipeline_id, exclude_run=context["run_id"])

    def _token_counter(self) -> TokenCounter | None:
        if not self.conn_id:
            return None
        # Imported here: the hook pulls in the SDK client, which a DAG file's parse does not need.
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        return ClaudeBatchHook(conn_id=self.conn_id).count_tokens


def _data_interval(context: Any) -> tuple[str, str] | None:
    """The run's data interval as ISO 8601 text, or ``None`` for a run without one."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        return None
    return start.isoformat(), end.isoformat()
