"""What earlier runs of the same pipeline cost, read from their manifests under the storage root.

The estimate learns from them (output tokens per answer, the prompt cache's hit rate, how the input
estimate compares with the tokens billed, and how many requests end answered in a batch or by a
synchronous retry), and the report shows a small history of cost per run.

A pipeline is a ``dag_id`` and a task group (``group_id``). :func:`pipeline_history` is the only place
that knows where the earlier runs' manifests are: ``{storage}/{dag_id}/{run_id}/{group_id}/manifest.json``
when run folders are per pipeline, else ``{storage}/{dag_id}/{run_id}/manifest.json`` (a manifest that
names another pipeline is skipped). Every run folder of the DAG is looked at (one small read each) and
the newest ``limit`` runs that answered something are kept; dry runs and runs without a manifest are
left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.money.tokens import TokenTotals
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import BILLED_OUTCOMES
from airflow_claude_batch.core.run.storage import StoragePath, read_json

log = logging.getLogger(__name__)

#: Earlier runs the estimate learns from and the report lists.
DEFAULT_HISTORY_RUNS = 5


@dataclass(frozen=True)
class RunCost:
    """One earlier run of a pipeline, as its manifest tells it.

    :param run_id: the run.
    :param built_at: when its build wrote the estimate (ISO 8601, UTC), for ordering.
    :param records: its input records.
    :param answered_batch: requests answered in a batch (succeeded or invalid output).
    :param answered_sync: requests answered by a synchronous retry.
    :param tokens: the tokens billed, by kind.
    :param estimated_input_tokens: the build's input estimate before any learning (``None``: unknown).
    :param expected_usd: the build's expected cost.
    :param upper_usd: the build's upper bound.
    :param actual_usd: what the run cost.
    """

    run_id: str
    built_at: str
    records: int
    answered_batch: int
    answered_sync: int
    tokens: TokenTotals
    estimated_input_tokens: int | None
    expected_usd: float | None
    upper_usd: float | None
    actual_usd: float

    @property
    def answered(self) -> int:
        return self.answered_batch + self.answered_sync

    @property
    def hit_rate(self) -> float | None:
        """Cache reads over cache reads and writes, in tokens (``None``: nothing was cached)."""
        written = self.tokens.cache_write_5m + self.tokens.cache_write_1h
        cached = written + self.tokens.cache_read
        return self.tokens.cache_read / cached if cached else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "built_at": self.built_at,
            "records": self.records,
            "expected_usd": self.expected_usd,
            "upper_usd": self.upper_usd,
            "actual_usd": self.actual_usd,
            "hit_rate": None if self.hit_rate is None else round(self.hit_rate, 4),
        }

    @classmethod
    def from_manifest(cls, run_id: str, manifest: Mapping[str, Any]) -> RunCost | None:
        """Read a manifest; ``None`` when it answered nothing (a dry run, a run that failed early)."""
        try:
            dispositions = manifest.get("dispositions") or {}
            billed = BILLED_OUTCOMES  # every billed answer (refusals too)
            # Answers reused from the answer store were billed to another run: neither answered here
            # (no tokens in this manifest) nor records this run's prices learn from.
            reused = int((manifest.get("reused") or {}).get("requests", 0))
            answered = sum(int(dispositions.get(name, 0)) for name in billed) - reused
            sync = sum(
                int((r.get("sync_retry") or {}).get(name, 0))
                for r in manifest.get("rounds") or ()
                for name in billed
            )
            estimate = manifest.get("estimate") or {}
            money = manifest.get("money") or {}
            if answered <= 0:
                return None
            estimated_input = estimate.get("input_tokens")
            return cls(
                run_id=run_id,
                built_at=str(estimate.get("built_at") or ""),
                records=int(manifest.get("input_records") or 0) - reused,
                answered_batch=answered - sync,
                answered_sync=sync,
                tokens=TokenTotals.from_dict(manifest.get("tokens") or {}),
                estimated_input_tokens=int(estimated_input) if isinstance(estimated_input, int) else None,
                expected_usd=_number(money.get("estimated_expected_usd")),
                upper_usd=_number(money.get("estimated_upper_usd")),
                actual_usd=float(money.get("actual_usd") or 0.0),
            )
        except (AttributeError, TypeError, ValueError):
            log.warning("the manifest of run %s is not readable as history; left out", run_id)
            return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pipeline_history(
    storage: StoragePath,
    dag_id: str,
    group_id: str | None = None,
    *,
    exclude_run: str | None = None,
    limit: int = DEFAULT_HISTORY_RUNS,
) -> list[RunCost]:
    """The newest earlier runs of a pipeline that answered something, newest first.

    :param storage: the root of run folders.
    :param dag_id: the pipeline's DAG.
    :param group_id: the pipeline's task group (``None``: the DAG's only pipeline).
    :param exclude_run: a run to leave out (the run being built).
    :param limit: how many runs to keep.
    """
    dag_folder = storage / dag_id
    try:
        if not dag_folder.exists():
            return []
        run_folders = [entry for entry in dag_folder.iterdir() if entry.name != exclude_run]  # type: ignore[attr-defined]
    except OSError as exc:
        log.warning("cannot list earlier runs under %s (%s); estimating without history", dag_folder, exc)
        return []
    runs = []
    for run_folder in run_folders:
        manifest = _pipeline_manifest(run_folder, group_id)
        if manifest is not None:
            run = RunCost.from_manifest(run_folder.name, manifest)
            if run is not None:
                runs.append(run)
    runs.sort(key=lambda run: (run.built_at, run.run_id), reverse=True)
    return runs[:limit]


def _pipeline_manifest(run_folder: StoragePath, group_id: str | None) -> Mapping[str, Any] | None:
    # a run folder per pipeline (``{run}/{group_id}/``); runs from before pipelines had their own
    candidates = [RunFolder(run_folder / group_id).manifest] if group_id else []
    candidates.append(RunFolder(run_folder).manifest)
    for path in candidates:
        try:
            manifest = read_json(path)
        except Exception:  # an unreadable earlier run must not stop this one's build
            log.warning("cannot read %s; left out of the history", path)
            continue
        if not isinstance(manifest, dict):
            continue
        owner = (manifest.get("pipeline") or {}).get("group_id")
        if group_id and owner and owner != group_id:
            continue
        return manifest
    return None


@dataclass(frozen=True)
class LearnedFigures:
    """What earlier runs say about the next one.

    :param runs: the runs learned from.
    :param output_per_answer: output tokens per answered request.
    :param hit_rate: cache reads over reads and writes, in tokens (``None``: nothing was cached).
    :param input_ratio: tokens billed as input per answer over the build's input estimate per request
        (``None``: the runs' estimates are unknown).
    :param answered_batch_fraction: requests answered in a batch, per input record.
    :param answered_sync_fraction: requests answered by a synchronous retry, per input record.
    """

    runs: tuple[str, ...]
    output_per_answer: float
    hit_rate: float | None
    input_ratio: float | None
    answered_batch_fraction: float
    answered_sync_fraction: float

    @classmethod
    def from_runs(cls, runs: Sequence[RunCost]) -> LearnedFigures | None:
        """Pool the runs (token-weighted); ``None`` without a run."""
        runs = [run for run in runs if run.answered > 0 and run.records > 0]
        if not runs:
            return None
        tokens = TokenTotals()
        for run in runs:
            tokens = tokens + run.tokens
        answered = sum(run.answered for run in runs)
        records = sum(run.records for run in runs)
        written = tokens.cache_write_5m + tokens.cache_write_1h
        cached = written + tokens.cache_read
        estimated = [run for run in runs if run.estimated_input_tokens]
        input_ratio = None
        if estimated:
            billed = sum(run.tokens.total_input for run in estimated)
            expected = sum(run.estimated_input_tokens * run.answered / run.records for run in estimated)  # type: ignore[operator]
            input_ratio = billed / expected if expected else None
        return cls(
            runs=tuple(run.run_id for run in runs),
            output_per_answer=tokens.output / answered,
            hit_rate=tokens.cache_read / cached if cached else None,
            input_ratio=input_ratio,
            answered_batch_fraction=sum(run.answered_batch for run in runs) / records,
            answered_sync_fraction=sum(run.answered_sync for run in runs) / records,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": list(self.runs),
            "output_tokens_per_answer": round(self.output_per_answer, 3),
            "cache_hit_rate": None if self.hit_rate is None else round(self.hit_rate, 4),
            "input_ratio": None if self.input_ratio is None else round(self.input_ratio, 4),
            "answered_batch_fraction": round(self.answered_batch_fraction, 4),
            "answered_sync_fraction": round(self.answered_sync_fraction, 4),
        }
