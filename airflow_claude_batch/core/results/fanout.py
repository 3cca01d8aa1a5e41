"""The fanout of one shard: its results stream → outcome rows, reconciled with its requests.

The fanout of one shard reads the batch's results once, as plain dicts, and writes one row per request
into the shard's outcome files (see ``docs/architecture.md``, "Outcome rows"):

- ``succeeded.jsonl``: ``custom_id``, ``model``, ``text`` (text blocks only), ``tool_calls`` (when
  the answer called tools), ``thinking`` (only with ``keep_thinking``), ``parsed``, ``stop_reason``,
  ``usage``, ``cost_usd`` (batch prices), ``pricing_params`` (only when the request sets a field that
  changes its price, such as ``inference_geo``);
- ``invalid_output.jsonl``: a billed answer the user's parser or schema rejected: ``custom_id``,
  ``model``, ``text``, ``error``, ``stop_reason``, ``usage``, ``cost_usd``;
- ``errored.jsonl``: ``custom_id``, ``error_type``, ``message``, ``retryable``, ``request_id``;
- ``expired.jsonl``: ``custom_id``; ``canceled.jsonl``: ``custom_id``, ``cancel_initiated_at`` (the
  batch's, so that the requeue rule can tell a user's cancellation from any other).

Every request of the shard gets exactly one row. Lines for ids the shard does not hold and repeated
lines for an id are counted and left out; a request without any line is a ``ReconciliationError``.
The files are published only once the whole stream was read and reconciled, so a failed or retried
fanout never leaves a half file or a line twice. Memory holds the shard's ids and one line at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.encoding import decode_request
from airflow_claude_batch.core.money.money_meter import MoneyMeter, run_prices
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.requests.marker import MarkerWatch
from airflow_claude_batch.core.requests.passthrough import load_passthrough, with_passthrough
from airflow_claude_batch.core.requests.request_lines import iter_request_lines
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.reconciliation import Reconciler
from airflow_claude_batch.core.results.result_rows import TOKEN_KINDS, RoutedRow, route_line
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcome_files import OutcomeFiles, shard_outcome_paths
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES, Outcome
from airflow_claude_batch.core.run.storage import StoragePath, write_json
from airflow_claude_batch.exceptions import ReconciliationError, ResultsStreamInterrupted

log = logging.getLogger(__name__)

#: How many times a cut results stream is downloaded again from the start before giving up.
DEFAULT_MAX_STREAM_RESTARTS = 3


@dataclass(frozen=True)
class FanoutSummary:
    """What the fanout of one shard wrote and spent.

    :param outcome_counts: rows per outcome file.
    :param unknown_ids: distinct ids in the results that the shard does not hold (left out).
    :param duplicates: repeated lines for one id (left out).
    :param tokens: token totals over billed answers (the marker's included).
    :param cost_usd: their cost at batch prices: the sum of the rows' ``cost_usd`` and the marker's,
        so the shard's figure is the rows' figure, never priced a second way.
    :param stream_restarts: how often a cut stream was downloaded again.
    """

    outcome_counts: dict[str, int]
    unknown_ids: int
    duplicates: int
    tokens: TokenTotals
    cost_usd: float
    stream_restarts: int = 0

    def descriptor_counts(self) -> dict[str, int]:
        """The counts for the shard descriptor: rows per outcome plus the reconciliation anomalies."""
        return {**self.outcome_counts, "unknown_ids": self.unknown_ids, "duplicates": self.duplicates}


class _Accounts:
    """Rows per outcome, tokens as plain counters, and the rows' own ``cost_usd`` summed."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(ROW_OUTCOMES, 0)
        self.tokens = [0] * len(TOKEN_KINDS)
        self.cost_usd = 0.0

    def add(self, routed: RoutedRow, *, count: bool = True) -> None:
        if count:
            self.counts[routed.outcome] += 1
        totals = routed.tokens
        if totals is not None:
            counters = self.tokens
            counters[0] += totals.input
            counters[1] += totals.output
            counters[2] += totals.cache_write_5m
            counters[3] += totals.cache_write_1h
            counters[4] += totals.cache_read
            self.cost_usd += float(routed.row.get("cost_usd") or 0.0)

    def totals(self) -> TokenTotals:
        return TokenTotals(*self.tokens)


class _PricedRequests:
    """The shard's custom_ids, keeping the params that change a request's price (``inference_geo``).

    Only lines that name such a field are decoded, so a shard without one costs a byte search a line.
    """

    def __init__(self, meter: MoneyMeter) -> None:
        self.meter = meter
        self.fields = tuple(f'"{name}"'.encode() for name in meter.multiplier_fields)
        self.params: dict[str, dict[str, Any]] = {}
        self._shared: dict[str, dict[str, Any]] = {}  # one dict per distinct value, shared by the ids

    def ids(self, requests_path: StoragePath) -> Iterable[str]:
        for custom_id, line in iter_request_lines(requests_path):
            if any(name in line for name in self.fields):
                pricing = self.meter.pricing_params(decode_request(line).get("params"))
                if pricing:
                    key = repr(sorted(pricing.items()))
                    self.params[custom_id] = self._shared.setdefault(key, pricing)
            yield custom_id


def fan_out_shard(
    *,
    folder: RunFolder,
    round_index: int,
    shard_index: int,
    requests_path: StoragePath,
    open_results: Callable[[], Iterable[Mapping[str, Any]]],
    prices: PriceTable,
    validator: OutputValidator | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    cancel_initiated_at: str | None = None,
    batch_id: str | None = None,
    marker_id: str | None = None,
    max_stream_restarts: int = DEFAULT_MAX_STREAM_RESTARTS,
) -> FanoutSummary:
    """Stream a shard's results once into its outcome files and reconcile them with its requests.

    :param folder: the run folder.
    :param round_index: the shard's round.
    :param shard_index: the shard's number in its round.
    :param requests_path: the shard's requests file (its custom_ids are the expected set).
    :param open_results: returns a fresh iterator of result lines from the start of the stream; it may
        raise ``ResultsStreamInterrupted`` while iterating, after which it is called again.
    :param prices: prices for each answer's ``cost_usd`` (batch rates) when the run froze none; the
        run's frozen prices otherwise (see :func:`~airflow_claude_batch.core.money.money_meter.run_prices`).
    :param validator: the user's parser/schema, or ``None``.
    :param sink: called with each succeeded row as it streams. A retried task calls it again for the
        same rows, so it should upsert by ``custom_id``.
    :param cancel_initiated_at: the batch's ``cancel_initiated_at``, kept on canceled rows.
    :param batch_id: for messages.
    :param marker_id: the batch's marker request: its line must be in the results (else nothing is
        written) and goes to ``marker.json``, out of the outcome files.
    :param max_stream_restarts: downloads again from the start after a cut, at most this many times.
    :raises ReconciliationError: when a request of the shard has no result line.
    :raises ResultsStreamInterrupted: when the stream was cut more often than allowed.
    """
    where = f"batch {batch_id} (round {round_index}, shard {shard_index})"
    pricer = MoneyMeter(run_prices(folder, prices), batch=True)
    priced = _PricedRequests(pricer)
    reconciler = Reconciler(priced.ids(requests_path))
    carried = load_passthrough(folder, reconciler.ids())
    accounts = _Accounts()
    marker = MarkerWatch(marker_id)
    restarts = 0
    with OutcomeFiles(shard_outcome_paths(folder, round_index, shard_index)) as files:
        while True:
            try:
                for line in open_results():
                    if marker.take(line) or not reconciler.accept(line.get("custom_id")):
                        continue
                    routed = route_line(
                        line,
                        pricer=pricer,
                        validator=validator,
                        cancel_initiated_at=cancel_initiated_at,
                        request=priced.params.get(line["custom_id"]),
                    )
                    row = with_passthrough(routed.row, carried)
                    files.write(routed.outcome, row)
                    accounts.add(routed)
                    if sink is not None and routed.outcome == Outcome.SUCCEEDED:
                        sink(dict(row))
                break
            except ResultsStreamInterrupted:
                if restarts >= max_stream_restarts:
                    raise
                restarts += 1
                log.warning(
                    "%s: the results stream was cut (%d lines kept so far); downloading again from the "
                    "start (%d/%d)",
                    where,
                    reconciler.accepted,
                    restarts,
                    max_stream_restarts,
                )
                reconciler.begin_attempt()
        _check_shortfall(reconciler, where)
        marker.check(where, folder.shard_state(round_index, shard_index))
        if marker.line is not None:
            routed = route_line(marker.line, pricer=pricer, validator=None)
            accounts.add(routed, count=False)  # billed with the batch, though no record
            write_json(
                folder.shard_marker(round_index, shard_index), {"outcome": routed.outcome, **routed.row}
            )
    summary = FanoutSummary(
        outcome_counts=accounts.counts,
        unknown_ids=reconciler.unknown_ids,
        duplicates=reconciler.duplicates,
        tokens=accounts.totals(),
        cost_usd=accounts.cost_usd,
        stream_restarts=restarts,
    )
    _log_anomalies(reconciler, where)
    return summary


def _check_shortfall(reconciler: Reconciler, where: str) -> None:
    missing = reconciler.missing(limit=5)
    if not missing:
        return
    count = len(reconciler.missing())
    raise ReconciliationError(
        f"{where}: {count} of {reconciler.expected} requests have no result line (for example "
        f"{', '.join(missing)}); nothing was written. Retry the fanout; if it persists, the batch's "
        f"results are incomplete: compare its request_counts with the shard's requests file."
    )


def _log_anomalies(reconciler: Reconciler, where: str) -> None:
    if reconciler.unknown_ids:
        log.warning(
            "%s: %d result ids are not in the shard and were left out (for example %s)",
            where,
            reconciler.unknown_ids,
            ", ".join(reconciler.unknown_sample()),
        )
    if reconciler.duplicates:
        log.warning("%s: %d repeated result lines were left out", where, reconciler.duplicates)
