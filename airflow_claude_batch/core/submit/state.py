"""The submit state of a shard: the record that makes its submission happen at most once.

Stored as ``round-{r}/shard-{nnnnn}.state.json`` next to the shard (:meth:`RunFolder.shard_state`).
It is written twice per submission: ``intent`` just before the create call (the attempt's id and
marker, the time, the newest batch that existed then and when an unanswered create can no longer
land, so that a lost create can be found again and proven), and ``submitted`` with the batch id once
the API answered or the batch was proven by its marker, or ``failed`` when the API refused the create
and made no batch. A create refused for now (the API's queue or rate limit, see
:mod:`~airflow_claude_batch.core.submit.pacing`) is ``failed`` with the time of its next try. It never holds a
request, an output or a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.run.conditional_writes import create_only, read_versioned, replace_if
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.line_reader import DEFAULT_CHUNK_SIZE, LineSplitter
from airflow_claude_batch.core.run.storage import StoragePath, read_json, write_json
from airflow_claude_batch.core.run.url_secrets import mask_urls
from airflow_claude_batch.exceptions import StorageError

STATE_SCHEMA_VERSION = 2
# Version 1 states (no marker) are still read: their batches were recorded from answered creates.
_READABLE_VERSIONS = (1, 2)
#: How many of the newest batches an intent records as listed before its create.
LISTED_BEFORE = 20
INTENT = "intent"
SUBMITTED = "submitted"
FAILED = "failed"
SubmitStatus = Literal["intent", "submitted", "failed"]
_STATUSES = (INTENT, SUBMITTED, FAILED)


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
    :param listed_before: the ids of the newest batches listed just before the intent (the newest
        first, up to :data:`LISTED_BEFORE`): the recovery's list stops at the first of them it meets,
        so that a deleted one does not make it read the whole workspace. No time is compared.
    :param failure: for ``"failed"``, the error the create was answered with (no request content).
    :param intent_id: the create attempt's id (a new one for every attempt).
    :param marker_id: the custom_id of the attempt's marker request (``core/requests/marker.py``).
    :param settle_at: when a create sent for this intent can no longer make a batch (its answer came,
        or the client's timeout and a margin passed); until then a new create would risk a second one.
    :param earlier_markers: markers of earlier attempts whose outcome was never learned: a batch that
        holds one of them is this shard's too.
    :param not_ours: batches checked after they ended and found to hold none of this shard's markers.
    :param retry_at: for a create the API refused for now (429, 529), when to try again (UTC, ISO
        8601): the shard waits for capacity. ``None`` otherwise.
    :param refusals: creates of this shard refused for now so far (the backoff grows with them).
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
    listed_before: tuple[str, ...] = ()
    failure: str | None = None
    intent_id: str | None = None
    marker_id: str | None = None
    settle_at: str | None = None
    earlier_markers: tuple[str, ...] = ()
    not_ours: tuple[str, ...] = ()
    retry_at: str | None = None
    refusals: int = 0
    schema_version: int = STATE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.failure:  # an error's text may quote a URL with credentials: never stored
            object.__setattr__(self, "failure", mask_urls(self.failure))
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
    def markers(self) -> tuple[str, ...]:
        """Every marker a batch of this shard may hold: this attempt's and the unresolved earlier ones'."""
        return ((self.marker_id,) if self.marker_id else ()) + self.earlier_markers

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
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"schema_version {version!r} is not one of {_READABLE_VERSIONS}; it was written by another "
                "version of airflow-claude-batch"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {key: value for key, value in data.items() if key in known}
        for name in ("earlier_markers", "not_ours", "listed_before"):
            fields[name] = tuple(fields.get(name) or ())
        try:
            state = cls(**fields)
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
    :param model: the first request's model (the marker request asks the same model), if it names one.
    """

    sha256: str
    request_count: int
    body_bytes: int
    model: str | None = None


def fingerprint_shard(path: StoragePath, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ShardFingerprint:
    """Read a shard file once, in blocks, and return its digest, request count and body size."""
    digest = hashlib.sha256()
    splitter = LineSplitter()
    count = 0
    total = 0
    first: bytes | None = None
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
                for line in splitter.feed(chunk):
                    count += 1
                    total += len(line)
                    first = line if first is None else first
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
        first = tail if first is None else first
    return ShardFingerprint(digest.hexdigest(), count, batch_body_size(total, count), _model_of(first))


def _model_of(line: bytes | None) -> str | None:
    try:
        model = orjson.loads(line)["params"]["model"] if line else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return model if isinstance(model, str) else None


class ShardStateFile:
    """The state file of one shard of a run: the submit's ``StateStore``.

    Every write is exclusive on the storage itself (:mod:`~airflow_claude_batch.core.run.conditional_writes`):
    the first one creates the file only if none exists, every later one replaces only the version this
    object last read or wrote. A writer that lost the race gets ``WriteConflictError`` and reads again.

    :param folder: the run folder.
    :param round_index: the shard's round.
    :param shard_index: the shard's number in its round.
    :param allow_unconditional: accept a storage without conditional writes (the weaker mode).
    """

    def __init__(
        self, folder: RunFolder, round_index: int, shard_index: int, *, allow_unconditional: bool = False
    ) -> None:
        self.folder = folder
        self.path = folder.shard_state(round_index, shard_index)
        self.location = str(self.path)
        self.allow_unconditional = allow_unconditional
        self._version: str | None = None

    def read(self) -> SubmitState | None:
        """Read the state and remember its version, the one the next write replaces."""
        found = read_versioned(self.path)
        self._version = found.version if found is not None else None
        if found is None:
            return None
        try:
            return SubmitState.from_dict(orjson.loads(found.data))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise StorageError(
                f"{self.path} is not a valid submit state ({exc}); a batch may exist for this shard, so "
                "the submit stops here: restore the file, or write the right batch id into it"
            ) from None

    def write(self, state: SubmitState) -> None:
        """Create the file, or replace the version last seen; ``WriteConflictError``: another came first."""
        data = orjson.dumps(state.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        if self._version is None:
            self._version = create_only(self.path, data, allow_unconditional=self.allow_unconditional)
        else:
            self._version = replace_if(
                self.path, data, self._version, allow_unconditional=self.allow_unconditional
            )
