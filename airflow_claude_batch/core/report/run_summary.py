"""One pipeline run as a row of the "Claude batches" page: its outcomes and its money, from its manifest.

The page lists many runs at once, so each run is read once and kept: :class:`SummaryCache` holds the
summaries by the manifest's location and a version (the time the report wrote it), since a manifest
changes only when its report task runs again. A run whose manifest cannot be read is summarised from
what its report task returned (:func:`summary_from_report_result`), which carries the same figures.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import DISPOSITIONS

#: Where a row's figures came from.
SOURCE_MANIFEST = "manifest"
SOURCE_REPORT_RESULT = "report result"
SOURCE_NONE = "none"
#: Summaries kept by :class:`SummaryCache` (a row is a few hundred bytes).
DEFAULT_CACHE_SIZE = 20_000


@dataclass(frozen=True)
class RunSummary:
    """What one run did and cost, as the page shows it.

    :param records: the run's input records (``None``: unknown).
    :param outcomes: final dispositions (``DISPOSITIONS``), zero for the ones the run has none of.
    :param batches: the run's batches.
    :param rounds: the run's rounds.
    :param actual_usd: what the run cost (batch answers and synchronous retries).
    :param actual_upper_usd: the most it may have cost (retries of unknown outcome counted).
    :param synchronous_equivalent_usd: every answer at standard prices.
    :param savings_usd: the synchronous equivalent less the actual cost.
    :param estimated_usd: the build's expected cost (``None``: unknown).
    :param estimated_upper_usd: the build's upper bound (``None``: unknown).
    :param reconciled: whether the dispositions add up to the input records.
    :param canceled: when the run was canceled on purpose, else ``None``.
    :param failure: why the report failed the run (a bound crossed, a record lost), else ``None``.
    :param report_uri: the run's ``report.html`` (``None``: unknown).
    :param source: where the figures came from (:data:`SOURCE_MANIFEST`, :data:`SOURCE_REPORT_RESULT`).
    """

    records: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    rounds: int = 0
    actual_usd: float = 0.0
    actual_upper_usd: float | None = None
    synchronous_equivalent_usd: float = 0.0
    savings_usd: float = 0.0
    estimated_usd: float | None = None
    estimated_upper_usd: float | None = None
    reconciled: bool | None = None
    canceled: str | None = None
    failure: str | None = None
    report_uri: str | None = None
    source: str = SOURCE_NONE

    @property
    def estimate_error_pct(self) -> float | None:
        """How far the actual cost was from the expected estimate, in percent of the estimate."""
        if not self.estimated_usd:
            return None
        return (self.actual_usd - self.estimated_usd) / self.estimated_usd * 100

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        error = self.estimate_error_pct
        data["estimate_error_pct"] = None if error is None else round(error, 2)
        return data


#: A row of nothing known (no manifest, no report result): the page still lists the run and its state.
UNKNOWN = RunSummary()


def summary_from_manifest(manifest: Mapping[str, Any], *, report_uri: str | None = None) -> RunSummary:
    """A run's row from its ``manifest.json`` (as stored: a dict).

    :param manifest: the manifest.
    :param report_uri: the run's ``report.html`` as people open it (default: beside the manifest's run
        folder).
    """
    money = _mapping(manifest.get("money"))
    failure = _mapping(manifest.get("failure"))
    rounds = manifest.get("rounds")
    return RunSummary(
        records=_int_or_none(manifest.get("input_records")),
        outcomes=_outcomes(manifest.get("dispositions")),
        batches=len(manifest.get("batch_ids") or ()),
        rounds=len(rounds) if isinstance(rounds, list) else 0,
        actual_usd=_money(money.get("actual_usd")),
        actual_upper_usd=_float_or_none(money.get("actual_upper_usd")),
        synchronous_equivalent_usd=_money(money.get("synchronous_equivalent_usd")),
        savings_usd=_money(money.get("savings_usd")),
        estimated_usd=_float_or_none(money.get("estimated_expected_usd")),
        estimated_upper_usd=_float_or_none(money.get("estimated_upper_usd")),
        reconciled=_bool_or_none(manifest.get("reconciled")),
        canceled=manifest.get("canceled") or None,
        failure=failure.get("reason") or None,
        report_uri=report_uri or _beside(manifest.get("run_uri"), RunFolder.REPORT),
        source=SOURCE_MANIFEST,
    )


def summary_from_report_result(result: Mapping[str, Any]) -> RunSummary:
    """A run's row from what its report task returned (``Manifest.summary()`` with readable URIs).

    :param result: the report task's return value.
    """
    files = _mapping(result.get("files"))
    money = _mapping(result.get("money"))
    return RunSummary(
        records=_int_or_none(result.get("input_records")),
        outcomes=_outcomes(result.get("dispositions")),
        batches=_int_or_none(result.get("batches")) or 0,
        rounds=_int_or_none(result.get("rounds")) or 0,
        actual_usd=_money(result.get("actual_cost_usd")),
        actual_upper_usd=_float_or_none(result.get("actual_cost_usd_upper")),
        synchronous_equivalent_usd=_money(result.get("synchronous_equivalent_usd")),
        savings_usd=_money(result.get("savings_usd")),
        estimated_usd=_float_or_none(result.get("estimated_cost_usd", money.get("estimated_expected_usd"))),
        estimated_upper_usd=_float_or_none(result.get("estimated_cost_usd_upper")),
        reconciled=_bool_or_none(result.get("reconciled")),
        canceled=result.get("canceled") or None,
        report_uri=_beside(result.get("run_uri"), files.get("report") or RunFolder.REPORT),
        source=SOURCE_REPORT_RESULT,
    )


class SummaryCache:
    """Run summaries by manifest location and version, the least recently used dropped past ``size``.

    A manifest is rewritten only when its report task runs again, so the version (the time the report
    task ended, or its try) makes a new read; a manifest not found yet is not kept, and is looked for
    again on the next request.

    :param size: summaries kept.
    """

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, RunSummary] = OrderedDict()
        self._lock = threading.Lock()  # the list reads unseen manifests from several threads
        self.reads = 0

    def get(self, key: Hashable, read: Callable[[], RunSummary | None]) -> RunSummary | None:
        """The summary kept under ``key``, else ``read()``'s (kept unless ``None``).

        :param key: the manifest's location and version.
        :param read: reads the manifest and summarises it; ``None`` when there is none (yet).
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            self.reads += 1
        summary = read()  # outside the lock: reads of other manifests go on meanwhile
        if summary is not None:
            with self._lock:
                self._entries[key] = summary
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return summary

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class NightTotals:
    """The money of the runs of one night (a UTC date).

    :param night: the date, ``YYYY-MM-DD``.
    :param runs: runs that night.
    :param actual_usd: what they cost.
    :param savings_usd: what they saved against the synchronous price.
    """

    night: str
    runs: int
    actual_usd: float
    savings_usd: float


def nightly_totals(rows: Iterable[tuple[str, RunSummary]]) -> list[NightTotals]:
    """Cost and savings per night, oldest first.

    :param rows: ``(night, summary)`` pairs, ``night`` as ``YYYY-MM-DD``.
    """
    totals: dict[str, list[float]] = {}
    for night, summary in rows:
        entry = totals.setdefault(night, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += summary.actual_usd
        entry[2] += summary.savings_usd
    return [
        NightTotals(night, int(runs), round(actual, 6), round(saved, 6))
        for night, (runs, actual, saved) in sorted(totals.items())
    ]


def _outcomes(value: Any) -> dict[str, int]:
    given = _mapping(value)
    return {name: _int_or_none(given.get(name)) or 0 for name in DISPOSITIONS}


def _beside(run_uri: Any, name: str) -> str | None:
    """``name`` in the run folder (the report returns the folder's files relative to it, or whole)."""
    if "://" in name or name.startswith("/"):
        return name
    if not isinstance(run_uri, str) or not run_uri:
        return None
    return f"{run_uri.rstrip('/')}/{name}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _money(value: Any) -> float:
    return _float_or_none(value) or 0.0


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
