"""The bounds on invalid and dead-lettered answers that fail a run."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.results.failure_threshold import FailureThreshold
from airflow_claude_batch.exceptions import InputError

ALL_INVALID = {"succeeded": 0, "invalid_output": 31, "dead_lettered": 0, "pending": 0}


def test_no_bound_by_default_even_when_every_answer_is_invalid() -> None:
    assert FailureThreshold.from_options().failure(ALL_INVALID, 31) is None


def test_a_share_over_the_bound_fails_and_says_why() -> None:
    failure = FailureThreshold.from_options(max_invalid_fraction="0.1").failure(ALL_INVALID, 31)
    assert failure is not None
    assert failure["bound"] == "max_invalid_fraction"
    assert "31 of 31 records ended invalid_output (100.0%)" in failure["reason"]
    at_the_bound = {**ALL_INVALID, "invalid_output": 3, "succeeded": 27}
    assert FailureThreshold(max_invalid_fraction=0.1).failure(at_the_bound, 30) is None


@pytest.mark.parametrize("value", ["1.5", -0.1, "lots"])
def test_a_bound_that_is_not_a_fraction_is_refused(value: object) -> None:
    with pytest.raises(InputError, match="fraction between 0 and 1"):
        FailureThreshold.from_options(max_invalid_fraction=value)


def test_records_left_pending_have_a_bound_of_their_own() -> None:
    left = {"succeeded": 90, "invalid_output": 0, "dead_lettered": 0, "pending": 10}
    failure = FailureThreshold.from_options(max_pending_fraction="0.05").failure(left, 100)
    assert failure is not None
    assert failure["bound"] == "max_pending_fraction"
    assert "10 of 100 records ended pending (10.0%)" in failure["reason"]
    assert FailureThreshold.from_options(max_pending_fraction=0.1).failure(left, 100) is None
