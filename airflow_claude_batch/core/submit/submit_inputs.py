"""The submit's records: what :func:`~airflow_claude_batch.core.submit.submission.submit_shard` is given
(the shard, its clocks, the API, state and claims it works with) and what it answers (a batch or a wait).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from airflow_claude_batch.core.run.claims import Claim
from airflow_claude_batch.core.submit.pacing import BEHIND_MARGIN
from airflow_claude_batch.core.submit.recovery import ResultsReads
from airflow_claude_batch.core.submit.state import SubmitState, utc_now

#: How long after its client gave up an unanswered create is still taken to be able to make a batch.
DEFAULT_SETTLE_MARGIN = timedelta(minutes=15)
#: How often a running candidate batch is looked at again.
DEFAULT_RECHECK = timedelta(minutes=5)

Batch = Mapping[str, Any]


#: How long a submit that lost the race to write the shard's intent waits for the winner's record.
DEFAULT_PEER_WAIT = timedelta(seconds=60)


class CreateRefused(Exception):
    """The API itself refused the create (400/401/403/404/413/422 with its JSON error body): it made
    no batch. Nothing may be adopted for it."""


class CreateOutcomeUnknown(Exception):
    """The create got an answer that proves nothing (408, 409, any 5xx, a gateway's page, a 4xx
    without the API's error body): a batch may have been made, or may still be, until ``settle_at``."""


class BatchApi(Protocol):
    """The API calls the submit needs."""

    def create_batch(self, marker: bytes) -> Batch:
        """Send the shard, followed by the ``marker`` request line, as a new batch, once; return it.

        Raise :class:`CreateRefused` or :class:`~airflow_claude_batch.core.submit.pacing.CreateThrottled` as
        their docs say, a ``BeforeSubmitError`` when the API refused the request for good, anything
        else (:class:`CreateOutcomeUnknown`, a timeout, a dropped connection) when the outcome is unknown.
        """
        ...

    def iter_batches(self, page_size: int) -> Iterator[Batch]:
        """Yield the workspace's batches, newest first, fetching pages of ``page_size`` lazily."""
        ...

    def result_ids(self, batch_id: str) -> Iterable[str]:
        """Yield the custom_ids of an ended batch's results (all of them, or fewer if a read stops
        short; results not found raise ``ResultsUnavailableError``)."""
        ...


class StateStore(Protocol):
    """Where the shard's submit state lives."""

    location: str

    def read(self) -> SubmitState | None:
        """Return the state, ``None`` when there is none; raise on any other read failure."""
        ...

    def write(self, state: SubmitState) -> None:
        """Write the state whole or not at all: created when none was read, else replacing exactly the
        version last read or written; ``WriteConflictError`` when another writer came first."""
        ...


class Claims(Protocol):
    """The storage root's claims index (:class:`~airflow_claude_batch.core.run.claims.ClaimsIndex`)."""

    def read(self, batch_id: str) -> Claim | None: ...

    def write(self, claim: Claim) -> None: ...


@dataclass(frozen=True)
class ShardToSubmit:
    """The shard as the build described it.

    :param uri: the shard's requests file.
    :param request_count: requests in the shard.
    :param body_bytes: size of the create body.
    """

    uri: str
    request_count: int
    body_bytes: int


@dataclass(frozen=True)
class SubmitResult:
    """What the submit did.

    :param batch_id: the shard's batch.
    :param action: ``created`` (a create was sent now), ``reattached`` (recorded earlier) or
        ``recovered`` (an earlier create whose answer was lost, proven by its claim or marker).
    :param request_count: requests of the shard in the batch (its marker not counted).
    :param marker_id: the marker request the batch holds (``None`` for a batch made without one).
    """

    batch_id: str
    action: Literal["created", "reattached", "recovered"]
    request_count: int
    marker_id: str | None = None


@dataclass(frozen=True)
class SubmitWait:
    """Nothing may be sent yet: call :func:`submit_shard` again at ``until``.

    :param until: when to look again (UTC).
    :param reason: what the submit waits for.
    :param nothing_listed: no candidate batch is listed: only time can tell.
    :param capacity: the wait is for the API's capacity (its queue or rate limit), not for a proof.
    """

    until: datetime
    reason: str
    nothing_listed: bool = False
    capacity: bool = False


@dataclass(frozen=True)
class SubmitTiming:
    """The submit's clocks.

    :param now: the clock (UTC).
    :param settle_after: from the intent, how long an unanswered create may still make a batch (the
        client's timeout plus :data:`DEFAULT_SETTLE_MARGIN`).
    :param recheck: how long to wait before looking at a running candidate again.
    :param reads: how a candidate batch's results are read again when a read is short or finds nothing.
    :param peer_wait: how long a submit that lost the race for the intent waits for the winner's record
        before following the winner's intent up like any other.
    :param sleep: waits that many seconds (the peer wait's steps).
    :param pacing_deadline: when a wait for capacity fails instead (``None``: no deadline yet).
    :param pacing_timeout: the timeout the deadline was set from, for the failure's message.
    :param behind_margin: how long after a lower shard's next try a shard waiting behind it looks again.
    """

    now: Callable[[], datetime] = utc_now
    settle_after: timedelta = timedelta(minutes=10) + DEFAULT_SETTLE_MARGIN
    recheck: timedelta = DEFAULT_RECHECK
    reads: ResultsReads = dataclasses.field(default_factory=ResultsReads)
    peer_wait: timedelta = DEFAULT_PEER_WAIT
    sleep: Callable[[float], None] = time.sleep
    pacing_deadline: datetime | None = None
    pacing_timeout: timedelta | None = None
    behind_margin: timedelta = BEHIND_MARGIN
