"""Records the build cannot send: stop on them, or set them aside (``on_invalid_record``).

- ``"fail"`` (the default): the build stops before anything is spent, with one message that lists the
  first bad records (at most :data:`ERRORS_LISTED`, each with its location and rule; a lone bad
  record keeps its own error); reading stops at the last one listed, so a broken input is not read
  to its end for nothing.
- ``"skip"``: each bad record becomes one row of the run's ``rejected.jsonl`` (``custom_id`` when the
  record has one, ``location``, ``rule``, ``error``) and is counted as its own disposition,
  ``rejected``; the others are sent. ``max_rejected_fraction`` bounds the share of rejected records:
  over it (or with no record left to send) the build fails, before any create.

Only a fault of one record is set aside (an ``InputError`` with a location): a wrong setting, an
unreadable file or a malformed line of a file stops the build in both modes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

import orjson

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import InputError

FAIL = "fail"
SKIP = "skip"
ON_INVALID_RECORD = (FAIL, SKIP)
#: The share of records ``"skip"`` may set aside before the build fails (5 %).
DEFAULT_MAX_REJECTED_FRACTION = 0.05
#: Bad records one error message lists.
ERRORS_LISTED = 20
#: The rule of a record's fault when the code that found it named none.
UNNAMED_RULE = "invalid_record"


@dataclass(frozen=True)
class InvalidRecordPolicy:
    """What the build does with a record it cannot send.

    :param on_invalid_record: ``"fail"`` or ``"skip"``.
    :param max_rejected_fraction: with ``"skip"``, the largest share of rejected records (0 to 1).
    :param listed: bad records listed in the error message.
    """

    on_invalid_record: str = FAIL
    max_rejected_fraction: float = DEFAULT_MAX_REJECTED_FRACTION
    listed: int = ERRORS_LISTED

    def __post_init__(self) -> None:
        if self.on_invalid_record not in ON_INVALID_RECORD:
            raise InputError(
                f"on_invalid_record must be one of {', '.join(map(repr, ON_INVALID_RECORD))}, got "
                f"{self.on_invalid_record!r}"
            )
        fraction = self.max_rejected_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise InputError(f"max_rejected_fraction must be a number from 0 to 1, got {fraction!r}")

    @classmethod
    def parse(cls, on_invalid_record: Any, max_rejected_fraction: Any) -> InvalidRecordPolicy:
        """Read the two settings as a DAG file or a rendered template gives them (text or values)."""
        mode = str(on_invalid_record or FAIL).strip().lower()
        fraction: Any = max_rejected_fraction
        if fraction is None or (isinstance(fraction, str) and not fraction.strip()):
            fraction = DEFAULT_MAX_REJECTED_FRACTION
        elif isinstance(fraction, str):
            try:
                fraction = float(fraction)
            except ValueError:
                raise InputError(
                    f"max_rejected_fraction must be a number from 0 to 1, got {max_rejected_fraction!r}"
                ) from None
        return cls(mode, fraction)


@dataclass(frozen=True)
class RejectedRow:
    """One row of ``rejected.jsonl``."""

    custom_id: str | None
    location: str | None
    rule: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Rejections:
    """The bad records of one build: listed in one error (``"fail"``) or in ``rejected.jsonl`` (``"skip"``).

    :param policy: the settings.
    :param open_rejected: opens ``rejected.jsonl`` whole-or-nothing (``atomic_writer``), for ``"skip"``.
    """

    def __init__(
        self, policy: InvalidRecordPolicy, open_rejected: Callable[[], AbstractContextManager[IO[bytes]]]
    ) -> None:
        self.policy = policy
        self._open_rejected = open_rejected
        self._first: list[RejectedRow] = []
        self._rows = bytearray()
        self._first_error: InputError | None = None
        self.count = 0

    def reject(self, exc: InputError, custom_id: str | None) -> None:
        """Take one record's fault; in ``"fail"`` mode raise the combined error once the list is full."""
        row = RejectedRow(custom_id, exc.location, exc.rule or UNNAMED_RULE, exc.reason)
        self.count += 1
        if self._first_error is None:
            self._first_error = exc
        if len(self._first) < self.policy.listed:
            self._first.append(row)
        if self.policy.on_invalid_record == SKIP:
            self._rows += orjson.dumps(row.to_dict()) + b"\n"
        elif self.count >= self.policy.listed:
            raise self._error(stopped=True)

    def finish(self, accepted: int) -> None:
        """Write ``rejected.jsonl`` (``"skip"``), then raise when the records may not be sent as they are.

        :param accepted: the records that became requests.
        :raises InputError: ``"fail"`` and a bad record; ``"skip"`` and too many rejected, or none left.
        """
        if self.policy.on_invalid_record == FAIL:
            if self.count == 1 and self._first_error is not None:
                raise self._first_error  # one bad record: its own message, as it was found
            if self.count:
                raise self._error(stopped=False)
            return
        with self._open_rejected() as out:
            out.write(bytes(self._rows))
        total = accepted + self.count
        if self.count and accepted == 0:
            raise InputError(
                f"every record ({self.count}) was rejected, nothing is left to send: "
                + self._listing()
                + f"; fix the records or the settings (see {RunFolder.REJECTED})"
            )
        if total and self.count / total > self.policy.max_rejected_fraction:
            raise InputError(
                f"{self.count} of {total} records were rejected ({self.count / total:.1%}), over "
                f"max_rejected_fraction={self.policy.max_rejected_fraction:g}; nothing was sent: "
                + self._listing()
                + f"; fix the records (see {RunFolder.REJECTED}), or raise max_rejected_fraction"
            )

    def _error(self, *, stopped: bool) -> InputError:
        """The combined error: the first bad record's own message first (its location leads, as for one
        bad record), then how many more, and each of them."""
        first = self._first[0]
        others = self.count - 1
        more = (
            f"at least {others} more records cannot be sent (reading stopped at the {self.count}th)"
            if stopped
            else f"{others} more record{'s' if others != 1 else ''} cannot be sent"
        )
        return InputError(
            f"{first.error} [{first.rule}]; {more}: {self._listing(skip_first=True)}; fix them, or pass "
            f"on_invalid_record='skip' to send the others and list these in {RunFolder.REJECTED}",
            location=first.location,
        )

    def _listing(self, *, skip_first: bool = False) -> str:
        rows = self._first[1:] if skip_first else self._first
        first_error = self._first[0].error if self._first else None
        shown = "; ".join(
            f"{row.location or 'a record'}"
            + (f" ({row.custom_id})" if row.custom_id else "")
            + (" [same error]" if skip_first and row.error == first_error else f" [{row.rule}]: {row.error}")
            for row in rows
        )
        more = self.count - len(self._first)
        return shown + (f"; and {more} more" if more > 0 else "")
