"""The report task: the run's manifest, report page, dead-letter and pending files, and flat output."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_claude_batch.compat import AirflowFailException, AirflowSkipException
from airflow_claude_batch.core.run import RunFolder, read_json, readable_uri, write_json
from airflow_claude_batch.exceptions import BeforeSubmitError
from airflow_claude_batch.lineage import LineageMixin
from airflow_claude_batch.links import ClaudeBatchesPageLink, ClaudeBatchReportLink
from airflow_claude_batch.operators.task_inputs import flag, load_prices, pipeline_id_of, run_folder_for


class ClaudeBatchReportOperator(LineageMixin, BaseOperator):
    """Account for every record of the run and write what a person and a downstream job read.

    Scans the run folder (``{storage}/{dag_id}/{run_id}/{pipeline_id}``) file by file and writes:

    - ``manifest.json``: input records; outcomes per round and in total; the final dispositions
      (succeeded, invalid_output, dead_lettered, pending) and whether they add up to the input
      (``reconciled``); batch ids; tokens by kind; money: the estimate, the actual cost at batch prices,
      the same work at standard prices, and the savings, computed with the prices the build froze into
      the run (``estimate.json``), not those loaded when the report runs;
    - ``report.html``: the same as a page with charts, readable offline: the estimate (expected and
      upper bound) beside the actual cost, the cache hit rate, and the cost of the pipeline's earlier
      runs;
    - ``dead-letter.jsonl`` (every round's, plus the last round's non-retryable errors) and
      ``pending.jsonl`` (what is still unfinished after the last round, or held: never dropped);
    - with ``output_uri``, one row per succeeded record of all rounds: ``custom_id`` plus the parsed
      fields (or ``text``), as JSON Lines, or CSV when the URI ends in ``.csv``.

    A run whose dispositions do not add up to its input records (a record in none: lost) fails its
    task after writing the manifest with a ``failure`` that says so, instead of succeeding with
    ``reconciled: false``. A run canceled on purpose (``python -m airflow_claude_batch.cancel``) is
    reported as such (the manifest's ``canceled``); what the cancel stopped is pending, reason
    ``canceled``.

    Returns a small summary for XCom: counts, batches, rounds, money and the files' URIs. Each Asset in
    ``outlets`` gets an event whose ``extra`` holds the same facts (:func:`asset_event_extra`): the
    counts per outcome, the actual cost, the savings and the manifest's URI, so a DAG scheduled on the
    Asset reads them from its triggering event. After a dry run it writes the estimate-only manifest
    and report, no flat output, and ends skipped so that its outlets announce no new data.

    :param storage: the root URI of run folders, as given to the build (templated).
    :param storage_conn_id: the connection for ``storage`` and ``output_uri`` (templated).
    :param max_rounds: the rounds the run may have in all, the first included.
    :param prices_file: a prices file over the shipped prices (templated).
    :param output_uri: where to write the flat output (templated), or ``None``.
    :param pipeline_id: the pipeline's name in the run folder path, as given to its build (default: the
        id of the task group the task is in, else ``claude_batch``).
    :param max_invalid_fraction: fail the run when more than this share of its input records ended
        ``invalid_output`` (templated; default ``None``: never). The manifest (``failure``) and the
        report page say why, and the task fails after writing them, so its outlets are not updated.
    :param max_dead_letter_fraction: the same bound for dead-lettered records.
    :param max_pending_fraction: the same bound for records left pending after the last round
        (retryable, but out of rounds or held by the budget).
    :param custom_input: the run read an input other than its interval's own (templated; e.g. a path
        from the trigger form): its flat output goes into its run folder, never to ``output_uri``. A run
        also writes there when another run owns ``output_uri`` (see ``batch.output_owner``).
    :param replace_output: replace ``output_uri`` although the run that owns it ran other request
        settings (model, prompt, ``max_tokens`` or other params) over the same interval and input
        (templated; default ``False``: such a run writes into its own run folder).
    """

    template_fields: Sequence[str] = (
        "storage",
        "storage_conn_id",
        "max_rounds",
        "prices_file",
        "output_uri",
        "custom_input",
        "replace_output",
        "max_invalid_fraction",
        "max_dead_letter_fraction",
        "max_pending_fraction",
    )
    ui_color = "#d8e4f0"
    operator_extra_links = (ClaudeBatchReportLink(), ClaudeBatchesPageLink())

    def __init__(
        self,
        *,
        storage: str,
        storage_conn_id: str | None = None,
        max_rounds: int,
        prices_file: str | None = None,
        output_uri: str | None = None,
        pipeline_id: str | None = None,
        custom_input: bool | str = False,
        max_invalid_fraction: float | str | None = None,
        max_dead_letter_fraction: float | str | None = None,
        max_pending_fraction: float | str | None = None,
        replace_output: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_pending_fraction = max_pending_fraction
        self.replace_output = replace_output
        self.max_invalid_fraction = max_invalid_fraction
        self.max_dead_letter_fraction = max_dead_letter_fraction
        self.pipeline_id = pipeline_id
        self.custom_input = custom_input
        self.storage = storage
        self.storage_conn_id = storage_conn_id
        self.max_rounds = max_rounds
        self.prices_file = prices_file
        self.output_uri = output_uri

    def execute(self, context: Any) -> dict[str, Any]:
        # Imported here, not at module level: a DAG file's parse does not load the ledger and the report.
        from airflow_claude_batch.core.build import read_answered_earlier
        from airflow_claude_batch.core.money import pipeline_history
        from airflow_claude_batch.core.report import (
            accounting_failure,
            is_dry_run,
            write_ledger,
            write_report,
        )
        from airflow_claude_batch.core.results import FailureThreshold
        from airflow_claude_batch.operators.owned_output import write_owned_output

        try:
            pipeline_id = pipeline_id_of(self, self.pipeline_id)
            folder = run_folder_for(context, str(self.storage), self.storage_conn_id, pipeline_id)
            prices = load_prices(self.prices_file, self.storage_conn_id)
            threshold = FailureThreshold.from_options(
                self.max_invalid_fraction, self.max_dead_letter_fraction, self.max_pending_fraction
            )
            max_rounds = int(self.max_rounds)
            dry_run = is_dry_run(folder)
            output = None if dry_run else self._output_path()
            extra = {}
            if output is not None:
                written = write_owned_output(
                    context,
                    folder,
                    output,
                    pipeline_id=pipeline_id,
                    max_rounds=max_rounds,
                    custom_input=flag(self.custom_input, "custom_input"),
                    replace_output=flag(self.replace_output, "replace_output"),
                )
                extra["output"] = str(written)
            ti = context["ti"]
            manifest, samples = write_ledger(
                folder,
                prices=prices,
                max_rounds=max_rounds,
                extra_files=extra,
                extra_fields={"answered_earlier": read_answered_earlier(folder)},
                pipeline={"dag_id": ti.dag_id, "group_id": pipeline_id},
            )
            history = pipeline_history(
                folder.storage_root, ti.dag_id, pipeline_id, exclude_run=context["run_id"]
            )
            failure = None
            if not dry_run:  # a record lost fails the run before any bound is looked at
                failure = accounting_failure(manifest) or threshold.failure(
                    manifest.dispositions, manifest.input_records
                )
            if failure is not None:
                manifest = dataclasses.replace(manifest, warnings=[failure["reason"], *manifest.warnings])
                write_json(folder.manifest, {**(read_json(folder.manifest) or {}), "failure": failure})
            write_report(folder.report, manifest, samples, history)
            ClaudeBatchReportLink.persist(context, report_uri=readable_uri(folder.report))
        except BeforeSubmitError as exc:
            raise AirflowFailException(str(exc)) from exc
        if failure is not None:
            # Failed, not succeeded: the outlets' Asset events must not announce this run's data.
            raise AirflowFailException(failure["reason"])
        summary = manifest.summary()
        # What people and downstream tasks read: URIs any tool opens (no connection id inside).
        summary["run_uri"] = readable_uri(summary["run_uri"])
        summary["files"] = {name: readable_uri(_uri(folder, path)) for name, path in manifest.files.items()}
        self._log(manifest.summary(), manifest.reconciled, manifest.notes)
        if dry_run:
            # Skipped, not succeeded: a dry run produced no results, so no Asset event may announce any.
            raise AirflowSkipException(
                f"dry run: estimate and manifest written to {readable_uri(folder.root)}; nothing submitted"
            )
        self._annotate_asset_events(context, run_extra(context, summary))
        self.record_lineage([folder.root], summary["files"].values())
        return summary

    def _annotate_asset_events(self, context: Any, extra: dict[str, Any]) -> None:
        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                events[outlet].extra.update(extra)

    def _output_path(self) -> ObjectStoragePath | None:
        text = None if self.output_uri is None else str(self.output_uri).strip()
        if not text or text == "None":
            return None
        return ObjectStoragePath(text, conn_id=self.storage_conn_id)

    def _log(self, summary: dict[str, Any], reconciled: bool, notes: list[str]) -> None:
        self.log.info(
            "%d records: %s; %d batches in %d rounds; $%.4f actual, $%.4f synchronous, $%.4f saved",
            summary["input_records"],
            ", ".join(f"{count} {name}" for name, count in summary["dispositions"].items()),
            summary["batches"],
            summary["rounds"],
            summary["actual_cost_usd"],
            summary["synchronous_equivalent_usd"],
            summary["savings_usd"],
        )
        if not reconciled:
            self.log.warning("the run does not reconcile: %s", "; ".join(notes))


def asset_event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """The facts an Asset event carries in its ``extra``, from the report's summary.

    ``outcomes`` are the final dispositions (``succeeded``, ``invalid_output``, ``dead_lettered``,
    ``pending``); money is in US dollars; ``manifest_uri`` points at the run's full account.
    """
    files = summary.get("files", {})
    extra = {
        "run_uri": summary["run_uri"],
        "manifest_uri": files.get("manifest"),
        "input_records": summary["input_records"],
        "outcomes": dict(summary["dispositions"]),
        "reconciled": summary["reconciled"],
        "rounds": summary["rounds"],
        "batches": summary["batches"],
        "actual_cost_usd": summary["actual_cost_usd"],
        "synchronous_equivalent_usd": summary["synchronous_equivalent_usd"],
        "savings_usd": summary["savings_usd"],
    }
    if files.get("output"):
        extra["output_uri"] = files["output"]
    return extra


def run_extra(context: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """The Asset event's ``extra``: the run's facts and the run that wrote the output."""
    return {**asset_event_extra(summary), "run_id": context["run_id"]}


def _uri(folder: RunFolder, name: str) -> str:
    return name if "://" in name else str(folder.root / name)
