"""What a rerun of the build does when the input changed: reuse, rebuild, add what is new, or stop.

The build records what it read (:mod:`airflow_claude_batch.core.build.input_fingerprint`). On a rerun of
the same run (a clear, a retry) it compares the input as it is now:

- unchanged: reuse the shards already built;
- changed, and nothing of round 0 was submitted (no state file, or only ``failed`` ones, whose creates
  the API refused): rebuild from the input as it is now;
- changed after a submit: by ``on_input_change``, ``"fail"`` (the default) stops before anything is
  spent and says what changed and the ways forward; ``"keep"`` reuses the shards built and leaves the
  change out (logged); ``"add_new"`` adds shards of only the records the run has not sent yet.

``"add_new"`` also works across runs: a new run over a data interval that earlier runs of the same DAG,
pipeline and request settings already answered sends only the records none of them answered (a
re-sweep after late data); the records it leaves out are counted in its manifest as answered earlier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from airflow_claude_batch.core.build.input_fingerprint import InputFingerprint, read_fingerprint
from airflow_claude_batch.core.results.flat_output import iter_succeeded_rows
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import Outcome
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, iter_jsonl, read_json, readable_uri, write_json
from airflow_claude_batch.core.submit.state import FAILED, read_state
from airflow_claude_batch.exceptions import InputChangedError, InputError, StorageError

log = logging.getLogger(__name__)

FAIL = "fail"
KEEP = "keep"
ADD_NEW = "add_new"
ON_INPUT_CHANGE = (FAIL, KEEP, ADD_NEW)

REUSE = "reuse"
REBUILD = "rebuild"

#: Re-sweeping an interval on Airflow 3: the run of a logical date is unique, so it is reprocessed (its
#: conf replaced), not triggered anew.
RESWEEP_COMMAND = (
    "airflow backfill create --dag-id <dag_id> --from-date <day> --to-date <day> "
    '--reprocess-behavior completed --dag-run-conf \'{"on_input_change": "add_new"}\''
)


def parse_on_input_change(value: object) -> str:
    """Return ``value`` as one of :data:`ON_INPUT_CHANGE`; ``InputError`` otherwise."""
    text = FAIL if value is None else str(value).strip().lower()
    if text in ("", "none"):
        text = FAIL
    if text not in ON_INPUT_CHANGE:
        raise InputError(f"on_input_change must be one of {', '.join(ON_INPUT_CHANGE)}, got {value!r}")
    return text


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun of the build does.

    :param action: ``"reuse"``, ``"rebuild"`` or ``"add_new"``.
    :param changes: what changed in the input, for the log.
    """

    action: str
    changes: tuple[str, ...] = ()


def plan_rerun(
    folder: RunFolder, now: InputFingerprint, shards: list[ShardDescriptor], on_input_change: str
) -> RerunPlan:
    """Decide what a rerun of the build does (see the module's docstring).

    :raises InputChangedError: the input changed after a submit and ``on_input_change`` is ``"fail"``.
    """
    earlier = read_fingerprint(folder)
    if earlier is None:
        log.warning("round 0 was built without an input fingerprint (an older version): reusing it as built")
        return RerunPlan(REUSE)
    changes = tuple(now.changes_since(earlier))
    if not changes:
        return RerunPlan(REUSE)
    submitted = [shard.index for shard in shards if _maybe_submitted(folder, shard)]
    if not submitted:
        log.warning("the input changed and nothing was submitted yet: rebuilding (%s)", "; ".join(changes))
        return RerunPlan(REBUILD, changes)
    if on_input_change == KEEP:
        log.warning(
            "the input changed after a submit; on_input_change='keep': the %d shard(s) built are reused "
            "and the change is left out of this run (%s)",
            len(shards),
            "; ".join(changes),
        )
        return RerunPlan(REUSE, changes)
    if on_input_change == ADD_NEW:
        return RerunPlan(ADD_NEW, changes)
    raise InputChangedError(
        f"the input of {readable_uri(folder.root)} changed after {len(submitted)} of its {len(shards)} "
        f"shard(s) were submitted: {'; '.join(changes)}. Nothing was sent for the change. Ways forward: "
        "(1) keep what this run built and leave the change out: put the input back as it was, or set "
        "on_input_change='keep' for the pipeline, then clear this task; (2) send only what is new "
        "(late data): run this interval again with on_input_change='add_new' in its conf, which on "
        f"Airflow 3 is one command: {RESWEEP_COMMAND} (the conf must also carry the params the run "
        "had); it sends only the records no run of the interval has answered yet"
    )


def forget_refused_submits(folder: RunFolder, shards: list[ShardDescriptor]) -> None:
    """Remove round 0's ``failed`` state files before a rebuild (their creates made no batch)."""
    for shard in shards:
        path = folder.shard_state(shard.round, shard.index)
        state = read_state(path)
        if state is not None and state.status == FAILED:
            path.unlink(missing_ok=True)


@dataclass
class KnownIds:
    """Records a build with ``add_new`` leaves out, and why.

    :param in_run: custom ids already in this run's round-0 shards.
    :param answered: custom ids earlier runs of the interval answered.
    :param runs: those earlier runs' folders.
    """

    in_run: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)

    def __contains__(self, custom_id: str) -> bool:
        return custom_id in self.in_run or custom_id in self.answered


def known_ids(folder: RunFolder, shards: list[ShardDescriptor], now: InputFingerprint) -> KnownIds:
    """Collect the ids ``add_new`` leaves out: this run's, and those earlier runs of the interval answered.

    An earlier run counts when it is a run of the same DAG and pipeline under the same storage root,
    over the same data interval (a run without one has no earlier runs), with the same request settings.
    """
    known = KnownIds()
    for shard in shards:
        known.in_run.update(_shard_ids(folder.shard_requests(shard.round, shard.index)))
    if now.data_interval is None:
        return known
    run_dir = folder.root.parent  # type: ignore[attr-defined]
    for other in _sibling_runs(run_dir.parent, folder.root.name, exclude=run_dir.name):  # type: ignore[attr-defined]
        earlier = read_fingerprint(other)
        if earlier is None or earlier.data_interval != now.data_interval:
            continue
        if earlier.params_digest != now.params_digest:
            continue
        before = len(known.answered)
        known.answered.update(_succeeded_ids(other))
        if len(known.answered) > before:
            known.runs.append(str(other.root))
    return known


def write_answered_earlier(folder: RunFolder, count: int, runs: list[str]) -> None:
    """Record, for the manifest, how many input records earlier runs of the interval had answered."""
    write_json(folder.answered_earlier, {"records": count, "runs": runs})


def read_answered_earlier(folder: RunFolder) -> dict[str, object] | None:
    data = read_json(folder.answered_earlier)
    return data if isinstance(data, dict) else None


def earlier_answers(folder: RunFolder, max_rounds: int, exclude: set[str]) -> Iterator[dict[str, object]]:
    """The succeeded rows of the earlier runs an ``add_new`` build left records out for.

    Each id once (the first run listed wins) and none of ``exclude`` (the ids this run answered), so
    that a re-sweep's flat output holds every answered record of the interval, whatever its format.
    """
    answered = read_answered_earlier(folder) or {}
    runs = answered.get("runs") or []
    seen = set(exclude)
    for uri in runs if isinstance(runs, list) else []:
        run_id = str(uri).rstrip("/").split("/")[-2]
        for row in iter_succeeded_rows(folder.sibling(run_id), max_rounds):
            custom_id = row.get("custom_id")
            if isinstance(custom_id, str) and custom_id not in seen:
                seen.add(custom_id)
                yield row


def _maybe_submitted(folder: RunFolder, shard: ShardDescriptor) -> bool:
    state = read_state(folder.shard_state(shard.round, shard.index))
    return state is not None and state.status != FAILED


def _shard_ids(path: StoragePath) -> Iterator[str]:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)["custom_id"]
    except FileNotFoundError:
        return
    except (OSError, orjson.JSONDecodeError, KeyError) as exc:
        raise StorageError(f"cannot read the ids of {path}: {exc}; the task will retry") from exc


def _sibling_runs(dag_dir: StoragePath, pipeline_id: str, *, exclude: str) -> Iterator[RunFolder]:
    try:
        entries = sorted(entry.name for entry in dag_dir.iterdir())  # type: ignore[attr-defined]
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in entries:
        if name != exclude:
            yield RunFolder(dag_dir / name / pipeline_id)


def _succeeded_ids(folder: RunFolder) -> Iterator[str]:
    """The ids a run answered: its batches' ``succeeded.jsonl`` and its synchronous retries' answers
    (``sync_retry.jsonl`` rows that succeeded), so a re-sweep never sends either again."""
    for round_index in folder.round_indexes():
        for shard_index in folder.shard_dirs(round_index):
            yield from _ids_of(folder.shard_outcome(round_index, shard_index, Outcome.SUCCEEDED), None)
            yield from _ids_of(folder.shard_sync_retry(round_index, shard_index), Outcome.SUCCEEDED)


def _ids_of(path: StoragePath, outcome: str | None) -> Iterator[str]:
    """The ids of ``path``'s rows (only those of ``outcome`` when given); none when it does not exist."""
    if not path.exists():
        return
    for row in iter_jsonl(path):
        custom_id = row.get("custom_id")
        if isinstance(custom_id, str) and (outcome is None or row.get("outcome") == outcome):
            yield custom_id
