"""The build task: records on object storage (or from a callable) → validated shards and an estimate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api.model_check import check_model
from airflow_claude_batch.core.build.build_step import build_run
from airflow_claude_batch.core.build.input_change import parse_on_input_change
from airflow_claude_batch.core.build.input_fingerprint import fingerprint_input
from airflow_claude_batch.core.build.rejections import InvalidRecordPolicy
from airflow_claude_batch.core.money.cost_history import RunCost, pipeline_history
from airflow_claude_batch.core.money.estimate import DEFAULT_BUDGET_BASIS, EstimateOptions
from airflow_claude_batch.core.money.input_tokens import TokenCounter
from airflow_claude_batch.core.requests.passthrough import parse_fields, write_passthrough
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sharding import ShardLimits
from airflow_claude_batch.core.requests.sources import (
    CallableRecords,
    FileRecords,
    RecordSource,
    expand_glob,
    split_glob,
)
from airflow_claude_batch.core.requests.structured_output import choose_mode, request_additions
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import BeforeSubmitError, ConnectionConfigError, InputError
from airflow_claude_batch.lineage import LineageMixin
from airflow_claude_batch.operators.build_options import BuildOptions
from airflow_claude_batch.operators.options import documented, renderers, takes_options, templated, values_of
from airflow_claude_batch.operators.task_inputs import (
    flag,
    load_prices,
    optional_number,
    optional_text,
    optional_whole_number,
    pipeline_id_of,
    run_folder_for,
    whole_number,
)


class ClaudeBatchBuildOperator(LineageMixin, BaseOperator):
    __doc__ = documented(
        """Render records into Message Batch requests, validate them and write round 0's shards.

        Reads the records as a stream, so a run of millions of records takes the memory of one record
        and a write buffer. Everything is checked before anything is spent: ids (the API's rule, unique
        across the run), params, sizes, and the cost against ``max_cost_usd``. Writes
        ``round-0/shard-*.requests.jsonl``, ``estimate.json`` and, last, ``round-0/shards.json``; a rerun
        of the same run returns that list without rebuilding, so shards that may have been submitted
        never change. Returns one ``ShardDescriptor`` dict per shard (never requests), ``[]`` in a dry
        run. Its parameters are the fields of
        :class:`~airflow_claude_batch.operators.build_options.BuildOptions`.
        """,
        BuildOptions,
    )

    template_fields: Sequence[str] = templated(BuildOptions)
    template_fields_renderers = renderers(BuildOptions)
    ui_color = "#f0e4d7"

    @takes_options(BuildOptions)
    def __init__(self, *, options: BuildOptions, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One attribute per option, as Airflow renders template fields: self.source, self.model, ...
        for name, value in values_of(options).items():
            setattr(self, name, value)
        # Airflow calls callables found in template fields while rendering them; wrapped, the user's
        # callable is called only when the records are read.
        self.source: Any = CallableRecords(options.source) if callable(options.source) else options.source

    def execute(self, context: Any) -> list[dict[str, Any]]:
        try:
            self._render_later_templates(context)
            self._require_connection()
            source, template = self._record_source(), self._template()
            self._check_model(template)
            carried = parse_fields(self.passthrough_fields)
            result = build_run(
                source,
                template,
                self._run_folder(context),
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
            )
            if carried and result.shard_dicts():
                write_passthrough(self._run_folder(context), source, template.custom_id_field, carried)
        except BeforeSubmitError as exc:
            # Bad input or over budget: retrying cannot help and nothing was spent.
            raise AirflowFailException(str(exc)) from exc
        shards = result.shard_dicts()
        self.record_lineage(getattr(source, "paths", ()), [shard["uri"] for shard in shards])
        return shards

    def _record_source(self) -> RecordSource:
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
