"""The submit state of a shard: the record that makes its submission happen at most once.

Stored as ``round-{r}/shard-{nnnnn}.state.json`` next to the shard (:meth:`RunFolder.shard_state`).
It is written twice per submission: ``intent`` just before the create call (with the time and the
newest batch that existed then, so that a lost create can be found again), and ``submitted`` with the
batch id once the API answered, or ``failed`` when the API refused the create and made no batch. It
never holds a request, an output or a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from airflow_claude_batch.batch.limits import batch_body_size
from airflow_claude_batch.batch.results_reader import DEFAULT_CHUNK_SIZE, LineSplitter
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.storage import StoragePath, read_json, write_json
from airflow_claude_batch.exceptions import StorageError

STATE_SCHEMA_VERSION = 1
INTENT = "intent"
SUBMITTED = "submitted"
FAILED = "failed"
SubmitStatus = Literal["intent", "submitted", "failed"]
_STATUSES = (INTENT, SUBMITTED, FAILED)

_STATE_FILE = re.compile(r"^shard-\d{5}\.state\.json$")
_ROUND_DIR = re.compile(r"^round-\d+$")


@dataclass(frozen=True)
class SubmitState:
    """What is known about the submission of one shard.

    :param shard_uri: the shard's requests file.
    :param fingerprint: sha256 (hex) of the shard file's bytes when the intent was written.
    :param request_count: requests in the shard.
    :param body_bytes: size of the create body.
    :param intent_at: when the create was about to be sent (UTC, ISO 8601).
    :param status: ``"intent"`` (a create may have been sent), ``"submitted"`` (``batch_id`` is known) or
        ``"failed"`` (the create was answered with an error and no batch was made: submit again).
    :param batch_id: the batch created from the shard, once known.
    :param created_at: the batch's ``created_at`` as the API gave it, once known.
    :param newest_batch_before: id of the newest batch of the workspace just before the intent, or
        ``None`` when there was none: a batch listed before it cannot be this shard's.
    :param failure: for ``"failed"``, the error the create was answered with (no request content).
    """

    shard_uri: str
    fingerprint: str
    request_count: int
    body_bytes: int
    intent_at: str
    status: SubmitStatus
    batch_id: str | None = None
    created_at: str | None = None
    newest_batch_before: str | None = None
    failure: str | None = None
    schema_version: int = STATE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {self.status!r}")
        if (self.status == SUBMITTED) != bool(self.batch_id):
            rule = "needs a batch_id" if self.status == SUBMITTED else "cannot have a batch_id"
            raise ValueError(f"a {self.status!r} state {rule}")

    def submitted(self, batch_id: str, created_at: str | None) -> SubmitState:
        """Return this intent completed with the batch that was created for it."""
        return dataclasses.replace(self, status=SUBMITTED, batch_id=batch_id, created_at=created_at)

    def failed(self, failure: str) -> SubmitState:
        """Return this intent closed without a batch: its create was refused."""
        return dataclasses.replace(self, status=FAILED, failure=failure)

    @property
    def intent_time(self) -> datetime:
        return parse_utc(self.intent_at)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SubmitState:
        """Build a state from its stored form; ``ValueError`` says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != STATE_SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version!r} is not {STATE_SCHEMA_VERSION}; it was written by another "
                "version of airflow-claude-batch"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            state = cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        parse_utc(state.intent_at)
        return state


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_utc(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 in UTC with a ``Z`` (e.g. ``2026-01-31T18:00:00.123456Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 time as the API and this module write it; ``ValueError`` if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 time, got {text!r}")
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", text.strip().replace("Z", "+00:00"))
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_state(path: StoragePath) -> SubmitState | None:
    """Read a state file; ``None`` only when it does not exist.

    Any other failure (unreadable, not JSON, not a state) raises ``StorageError``: it must never be
    taken for "nothing was submitted".
    """
    data = read_json(path)
    if data is None:
        return None
    try:
        return SubmitState.from_dict(data)
    except ValueError as exc:
        raise StorageError(
            f"{path} is not a valid submit state ({exc}); a batch may exist for this shard, so the "
            "submit stops here: restore the file, or write the right batch id into it"
        ) from None


def write_state(path: StoragePath, state: SubmitState) -> None:
    """Write a state file whole or not at all."""
    write_json(path, state.to_dict())


@dataclass(frozen=True)
class ShardFingerprint:
    """A shard file as the create will send it.

    :param sha256: hex digest of the file's bytes.
    :param request_count: non-blank lines (one request each).
    :param body_bytes: size of the create body made of those lines.
    """

    sha256: str
    request_count: int
    body_bytes: int


def fingerprint_shard(path: StoragePath, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ShardFingerprint:
    """Read a shard file once, in blocks, and return its digest, request count and body size."""
    digest = hashlib.sha256()
    splitter = LineSplitter()
    count = 0
    total = 0
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
                for line in splitter.feed(chunk):
                    count += 1
                    total += len(line)
    except FileNotFoundError:
        raise StorageError(
            f"the shard file {path} does not exist; it is written by the build task: clear the build "
            "task of this run to write it again"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot read the shard file {path}: {exc}; the task will retry") from exc
    tail = splitter.finish()
    if tail is not None:
        count += 1
        total += len(tail)
    return ShardFingerprint(digest.hexdigest(), count, batch_body_size(total, count))


def sibling_states(folder: RunFolder, own_state: StoragePath) -> Iterator[tuple[str, SubmitState]]:
    """Yield ``(location, state)`` for every other shard's state file of the run, all rounds included.

    ``folder.root`` must support ``iterdir`` (``pathlib.Path``, ``UPath`` and ``ObjectStoragePath`` do).
    """
    own = str(own_state)
    try:
        rounds = [entry for entry in folder.root.iterdir() if _ROUND_DIR.match(entry.name)]  # type: ignore[attr-defined]
        for round_dir in rounds:
            for entry in round_dir.iterdir():
                if _STATE_FILE.match(entry.name) and str(entry) != own:
                    state = read_state(entry)
                    if state is not None:
                        yield str(entry), state
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot list the run folder {folder.root}: {exc}; the task will retry") from exc


class ShardStateFile:
    """The state file of one shard of a run, with its siblings: the submit's ``StateStore``.

    :param folder: the run folder.
    :param round_index: the shard's round.
    :param shard_index: the shard's number in its round.
    """

    def __init__(self, folder: RunFolder, round_index: int, shard_index: int) -> None:
        self.folder = folder
        self.path = folder.shard_state(round_index, shard_index)
        self.location = str(self.path)

    def read(self) -> SubmitState | None:
        return read_state(self.path)

    def write(self, state: SubmitState) -> None:
        write_state(self.path, state)

    def siblings(self) -> Iterator[tuple[str, SubmitState]]:
        return sibling_states(self.folder, self.path)
