"""When a run's answers are too often unusable, the run fails instead of announcing its data.

``max_invalid_fraction`` bounds the share of the input records whose billed answer the parser or schema
rejected (``invalid_output``); ``max_dead_letter_fraction`` bounds the share that ended dead-lettered;
``max_pending_fraction`` the share left pending after the last round (retryable, but out of rounds or
held by the budget; ``python -m airflow_claude_batch.resend_pending`` picks them for a new run). All
default to ``None``: no bound. The report checks them once the manifest is written, records the
verdict in ``manifest.json`` (``failure``) and on the report page, and then fails, so that the report
task's outlets (its Assets) are not updated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import Disposition, Outcome
from airflow_claude_batch.exceptions import InputError

#: The disposition each bound applies to.
_WHERE = {
    Disposition.INVALID_OUTPUT: (
        f"the error of each {RunFolder.outcome_file_name(Outcome.INVALID_OUTPUT)} row"
    ),
    Disposition.DEAD_LETTERED: RunFolder.DEAD_LETTER,
    Disposition.PENDING: (
        f"{RunFolder.PENDING}; python -m airflow_claude_batch.resend_pending picks them for a new run"
    ),
}
_BOUNDED = (
    ("max_invalid_fraction", Disposition.INVALID_OUTPUT),
    ("max_dead_letter_fraction", Disposition.DEAD_LETTERED),
    ("max_pending_fraction", Disposition.PENDING),
)


def _fraction(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a fraction between 0 and 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise InputError(f"{name} must be a fraction between 0 and 1, got {value!r}")
    return number


@dataclass(frozen=True)
class FailureThreshold:
    """The bounds a run's dispositions must stay within.

    :param max_invalid_fraction: the largest share of input records that may end ``invalid_output``.
    :param max_dead_letter_fraction: the largest share that may end dead-lettered.
    :param max_pending_fraction: the largest share that may be left pending after the last round.
    """

    max_invalid_fraction: float | None = None
    max_dead_letter_fraction: float | None = None
    max_pending_fraction: float | None = None

    @classmethod
    def from_options(
        cls,
        max_invalid_fraction: Any = None,
        max_dead_letter_fraction: Any = None,
        max_pending_fraction: Any = None,
    ) -> FailureThreshold:
        """Read the bounds (templated values arrive as text).

        :raises InputError: a bound that is not a fraction between 0 and 1.
        """
        return cls(
            _fraction(max_invalid_fraction, "max_invalid_fraction"),
            _fraction(max_dead_letter_fraction, "max_dead_letter_fraction"),
            _fraction(max_pending_fraction, "max_pending_fraction"),
        )

    def failure(self, dispositions: Mapping[str, int], input_records: int) -> dict[str, Any] | None:
        """Return why the run fails (``{"reason", "bound", "limit", "fraction", ...}``), or ``None``."""
        if input_records <= 0:
            return None
        for bound, disposition in _BOUNDED:
            limit = getattr(self, bound)
            count = int(dispositions.get(disposition, 0))
            fraction = count / input_records
            if limit is not None and fraction > limit:
                return {
                    "reason": (
                        f"{count} of {input_records} records ended {disposition} ({fraction:.1%}), over "
                        f"{bound}={limit:g}: the run failed and its Assets were not updated; see "
                        f"{_WHERE[disposition]}"
                    ),
                    "bound": bound,
                    "limit": limit,
                    "disposition": disposition,
                    "count": count,
                    "fraction": round(fraction, 6),
                }
        return None
