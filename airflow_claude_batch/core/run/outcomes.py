"""The outcome vocabulary: one name for each outcome of a request and each disposition of a record.

The values are the names written in outcome files, rows, manifests and XCom, so they never change; a
``StrEnum`` member equals its value (``Outcome.SUCCEEDED == "succeeded"``) and is written as it. Every
module names an outcome through these enums, never as a literal (``tests/test_architecture.py``).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What became of one request: a result's type from the API, or what the fanout or a synchronous
    retry made of it. The first six are the outcome files of a shard (``round-r/shard-nnnnn/``)."""

    #: an answer (API result type), accepted by the user's parser or schema
    SUCCEEDED = "succeeded"
    #: a billed answer that the user's parser or schema rejected, paused, or cut at ``max_tokens``
    INVALID_OUTPUT = "invalid_output"
    #: a billed answer with ``stop_reason: refusal``: final, never requeued
    REFUSED = "refused"
    #: the API's ``errored`` result type
    ERRORED = "errored"
    #: the API's ``expired`` result type: the batch ended before the request ran
    EXPIRED = "expired"
    #: the API's ``canceled`` result type: the batch was canceled before the request ran
    CANCELED = "canceled"
    #: a synchronous retry whose outcome nobody saw (possibly billed, never sent again)
    UNKNOWN = "unknown"
    #: a synchronous retry refused before sending (nothing billed): the request was requeued
    FELL_BACK = "fell_back"
    #: a pending row's ``last_outcome`` for a shard a cancel stopped before its create
    NOT_SUBMITTED = "not_submitted"


class Disposition(StrEnum):
    """Where each input record of a run ends, exactly one per record (the manifest's ``dispositions``)."""

    SUCCEEDED = "succeeded"
    INVALID_OUTPUT = "invalid_output"
    REFUSED = "refused"
    DEAD_LETTERED = "dead_lettered"
    PENDING = "pending"
    #: records the build set aside (``on_invalid_record="skip"``), never sent
    REJECTED = "rejected"


class PendingReason(StrEnum):
    """Why a record is pending rather than dead-lettered (a pending row's ``reason``), besides the
    budget's own text."""

    #: the run was canceled on purpose: its requeueable requests are held
    CANCELED = "canceled"
    #: a synchronous retry of unknown outcome, kept back
    SYNC_OUTCOME_UNKNOWN = "sync_outcome_unknown"


# The groups below hold the plain values (``str``), so a dict keyed by them (``dict.fromkeys``) is
# written as it always was: orjson writes only exact ``str`` keys.

#: The API's result types (``result.type``), also its ``request_counts`` besides ``processing``.
RESULT_TYPES: tuple[str, ...] = tuple(
    outcome.value for outcome in (Outcome.SUCCEEDED, Outcome.ERRORED, Outcome.CANCELED, Outcome.EXPIRED)
)
#: The files a fanout writes for every shard, in this order.
ROW_OUTCOMES: tuple[str, ...] = tuple(
    outcome.value
    for outcome in (
        Outcome.SUCCEEDED,
        Outcome.INVALID_OUTPUT,
        Outcome.ERRORED,
        Outcome.EXPIRED,
        Outcome.CANCELED,
        Outcome.REFUSED,
    )
)
#: Outcome files added after the first release: a shard fanned out before them has none, and is
#: finished all the same (its rows are in the other files).
LATER_OUTCOMES: tuple[str, ...] = (Outcome.REFUSED.value,)
#: Rows that hold a billed answer (and so tokens and cost).
BILLED_OUTCOMES: tuple[str, ...] = tuple(
    outcome.value for outcome in (Outcome.SUCCEEDED, Outcome.INVALID_OUTPUT, Outcome.REFUSED)
)
#: Rows the requeue rule decides on (requeue, dead-letter or hold).
UNFINISHED_OUTCOMES: tuple[str, ...] = tuple(
    outcome.value for outcome in (Outcome.ERRORED, Outcome.EXPIRED, Outcome.CANCELED)
)
#: The manifest's dispositions, in the manifest's order.
DISPOSITIONS: tuple[str, ...] = tuple(disposition.value for disposition in Disposition)
