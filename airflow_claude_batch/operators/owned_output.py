"""The report's flat output under the ownership rule (:mod:`airflow_claude_batch.core.run.output_owner`)."""

from __future__ import annotations

import logging
from typing import Any

from airflow_claude_batch.core.build import earlier_answers, read_answered_earlier, read_fingerprint
from airflow_claude_batch.core.results import iter_succeeded_rows, write_flat_output
from airflow_claude_batch.core.run import OutputClaim, RunFolder, StoragePath, claim_output, place_output

log = logging.getLogger(__name__)


def write_owned_output(
    context: Any,
    folder: RunFolder,
    output: StoragePath,
    *,
    pipeline_id: str,
    max_rounds: int,
    custom_input: bool,
    replace_output: bool = False,
) -> StoragePath:
    """Write the run's flat output to ``output`` if the run owns it, else into its run folder.

    :param replace_output: replace ``output`` although its owner ran other request settings.
    :return: where the flat output was written.
    """
    fingerprint = read_fingerprint(folder)
    claim = OutputClaim(
        dag_id=context["ti"].dag_id,
        pipeline_id=pipeline_id,
        run_id=context["run_id"],
        data_interval=None if fingerprint is None else fingerprint.data_interval,
        sources=None if fingerprint is None else fingerprint.sources,
        run_folder=str(folder.root),
        params_digest=None if fingerprint is None else fingerprint.params_digest,
    )
    place = place_output(output, folder, claim, custom_input=custom_input, replace_output=replace_output)
    rows = None
    if place.owned:
        claim_output(output, claim)
        rows = _with_earlier_answers(folder, max_rounds)
    else:
        log.warning(
            "not replacing %s: %s; this run's flat output goes to %s", output, place.reason, place.target
        )
    count = write_flat_output(folder, place.target, max_rounds=max_rounds, rows=rows)
    log.info("wrote %d succeeded records to %s", count, place.target)
    return place.target


def _with_earlier_answers(folder: RunFolder, max_rounds: int) -> Any:
    """For a re-sweep that left answered records out: this run's rows, then the earlier answers kept."""
    answered = read_answered_earlier(folder)
    if not answered or not answered.get("records"):
        return None

    def rows() -> Any:
        sent = {row["custom_id"] for row in iter_succeeded_rows(folder, max_rounds)}
        yield from iter_succeeded_rows(folder, max_rounds)
        yield from earlier_answers(folder, max_rounds, sent)

    return rows
