"""Cancelling a run's batches on purpose: find exactly the batches a run folder's state files name.

Nothing in a task's life cancels a batch (a clear, a kill, a mark, a triggerer restart all leave it
running, so that a rerun re-attaches to it). Cancelling is a user's explicit action, and this module is
its core: it lists the batches recorded by the state files under one DAG run's folder
(``{storage}/{dag_id}/{run_id}/``, optionally one pipeline of it) and cancels those, never a batch
found any other way. The CLI is :mod:`airflow_claude_batch.cancel`.

Cancelling a run is a state of the run, not only of its batches: the command first writes the run's
cancel record (:mod:`~airflow_claude_batch.core.run.cancel_record`) in each pipeline's folder, so that no
create, requeue round or synchronous retry follows, then cancels the recorded batches, and says what it
stopped: the batches, the shards that had no batch yet (:func:`stopped_shards`, a shard waiting for
capacity after a 429 among them) and the rounds that will not be built (:func:`stopped_round`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from airflow_claude_batch.core.run.layout import RunFolder, safe_segment
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.storage import StoragePath, folder_names
from airflow_claude_batch.core.submit.state import FAILED, read_state


@dataclass(frozen=True)
class RecordedBatch:
    """A shard's submission as its state file records it.

    :param pipeline_id: the pipeline (task group id) the shard belongs to.
    :param round_index: the shard's round.
    :param shard_index: the shard's number in its round.
    :param status: the state's status (``intent``, ``submitted`` or ``failed``).
    :param batch_id: the batch, when the state names one.
    """

    pipeline_id: str
    round_index: int
    shard_index: int
    status: str
    batch_id: str | None


@dataclass(frozen=True)
class CancelOutcome:
    """What happened to one recorded batch.

    :param batch: the recorded batch.
    :param result: ``"cancel requested"``, ``"no batch recorded"`` or why the cancel failed.
    :param ok: whether nothing is left to do for it.
    """

    batch: RecordedBatch
    result: str
    ok: bool


def run_root(storage: StoragePath, dag_id: str, run_id: str) -> StoragePath:
    """Return ``{storage}/{dag_id}/{run_id}``, the folder holding every pipeline of one DAG run."""
    return storage / safe_segment(dag_id, "dag_id") / safe_segment(run_id, "run_id")


def recorded_batches(root: StoragePath, pipeline_id: str | None = None) -> list[RecordedBatch]:
    """List the submissions recorded under one DAG run's folder, in pipeline, round and shard order.

    :param root: ``{storage}/{dag_id}/{run_id}`` (see :func:`run_root`).
    :param pipeline_id: only this pipeline's; ``None``: every pipeline of the run.
    :raises StorageError: the folder cannot be listed, or a state file cannot be read.
    """
    pipelines = pipeline_ids(root, pipeline_id)
    found: list[RecordedBatch] = []
    for pipeline in pipelines:
        found.extend(_pipeline_batches(RunFolder(root / pipeline), pipeline))
    return found


def cancel_recorded(batches: list[RecordedBatch], cancel: Callable[[str], object]) -> Iterator[CancelOutcome]:
    """Call ``cancel(batch_id)`` for every recorded batch that has an id; yield what happened.

    An ``intent`` without a batch id is reported, not guessed at: its create may have reached the API,
    and only the submit's recovery can tell which batch is its own.
    """
    for batch in batches:
        if batch.batch_id is None:
            note = (
                "a create may have been sent; no batch id recorded"
                if batch.status == "intent"
                else ("no batch recorded")
            )
            yield CancelOutcome(batch, note, ok=batch.status != "intent")
            continue
        try:
            cancel(batch.batch_id)
        except Exception as exc:  # the caller reports every outcome, then fails if one is not ok
            yield CancelOutcome(batch, f"cancel failed: {type(exc).__name__}: {exc}", ok=False)
        else:
            yield CancelOutcome(batch, "cancel requested", ok=True)


@dataclass(frozen=True)
class StoppedShard:
    """A shard of a run's shard lists that had no batch when the run was canceled.

    :param pipeline_id: the pipeline.
    :param round_index: the shard's round.
    :param shard_index: the shard's number.
    :param requests: its requests (pending with the reason ``canceled``).
    :param note: why it had no batch (not submitted yet, or waiting for capacity until a time).
    """

    pipeline_id: str
    round_index: int
    shard_index: int
    requests: int
    note: str


def pipeline_ids(root: StoragePath, pipeline_id: str | None = None) -> list[str]:
    """The pipelines of one DAG run's folder (only ``pipeline_id`` when given)."""
    return [safe_segment(pipeline_id, "pipeline_id")] if pipeline_id else folder_names(root)


def stopped_shards(folder: RunFolder, pipeline: str) -> list[StoppedShard]:
    """The shards of the run's shard lists that have no batch: none created yet, or only refused
    creates (``failed``, with ``retry_at`` when waiting for capacity). After a cancel none is created."""
    stopped: list[StoppedShard] = []
    round_index = 0
    while (shards := read_shard_list(folder, round_index)) is not None:
        for shard in shards:
            state = read_state(folder.shard_state(round_index, shard.index))
            if state is not None and state.status != FAILED:
                continue
            if state is None:
                note = "not submitted yet"
            elif state.retry_at:
                note = f"waiting for capacity until {state.retry_at} ({state.failure})"
            else:
                note = f"its create was refused ({state.failure})"
            stopped.append(StoppedShard(pipeline, round_index, shard.index, shard.request_count, note))
        round_index += 1
    return stopped


def stopped_round(folder: RunFolder) -> int | None:
    """The first round the cancel keeps from being built: the one after the last built round, when that
    round's requeue has not run yet; ``None`` when nothing of round 0 was built or every requeue ran."""
    round_index = 0
    if read_shard_list(folder, 0) is None:
        return None
    while read_shard_list(folder, round_index + 1) is not None:
        round_index += 1
    if not read_shard_list(folder, round_index) or folder.requeue_record(round_index).exists():
        return None  # an empty round ends the run; a requeued round's next round is already built
    return round_index + 1


def _pipeline_batches(folder: RunFolder, pipeline: str) -> Iterator[RecordedBatch]:
    for round_index in folder.round_indexes():
        for shard_index in folder.state_file_shards(round_index):
            state = read_state(folder.shard_state(round_index, shard_index))
            if state is not None:
                yield RecordedBatch(pipeline, round_index, shard_index, state.status, state.batch_id)
