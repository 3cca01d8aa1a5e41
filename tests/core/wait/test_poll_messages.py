"""Poll messages: the progress, deadline and cancel lines a wait logs, and how often."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_claude_batch.core.wait.poll_messages import (
    ProgressLog,
    canceled_message,
    deadline_message,
    describe_progress,
    done_fraction,
    format_duration,
    marker_note,
    request_counts,
)
from tests.core.wait.test_polling import NOW, batch


def test_request_counts_are_five_integers() -> None:
    assert request_counts({"request_counts": {"succeeded": 3, "expired": None}}) == {
        "processing": 0,
        "succeeded": 3,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }


def test_progress_lines_come_on_change_at_the_end_and_otherwise_every_so_often() -> None:
    log = ProgressLog(every=600.0)
    polls = [
        (0, "in_progress", False, True),  # the first poll
        (60, "in_progress", False, False),
        (599, "in_progress", False, False),
        (600, "in_progress", False, True),  # ten minutes later
        (660, "canceling", False, True),  # a change of status
        (720, "canceling", False, False),
        (780, "ended", True, True),  # the end
    ]
    assert [log.due(status, now=NOW + t, final=final) for t, status, final, _ in polls] == [
        due for *_, due in polls
    ]


def test_progress_line_says_status_requests_elapsed_and_time_left() -> None:
    created = datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()
    now = created + 3 * 3600 + 120
    line = describe_progress(batch("in_progress", processing=1500), now=now, end_time=created + 25 * 3600)
    assert line == (
        "batch msgbatch_test is in_progress; 0 of 1,500 requests done (0%): 1,500 processing, "
        "0 succeeded, 0 errored, 0 canceled, 0 expired; running for 3h02m; "
        "20h58m left before it expires; deadline in 21h58m"
    )


def test_progress_line_says_how_much_is_done_and_how_it_went() -> None:
    created = datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()
    running = batch("in_progress", processing=1200, succeeded=770, errored=20, expired=11)
    line = describe_progress(running, now=created + 600, end_time=created + 99_999)
    assert "801 of 2,001 requests done (40%): 1,200 processing, 770 succeeded, 20 errored" in line
    assert "11 expired" in line
    assert done_fraction(running) == pytest.approx(801 / 2001)
    assert done_fraction(batch("in_progress")) == 0.0


def test_progress_is_logged_as_it_moves_but_at_most_once_a_minute() -> None:
    log = ProgressLog(every=600.0, min_every=60.0, step=0.05)
    polls = [
        (0, 0.00, True),  # the first poll
        (30, 0.20, False),  # moved, but within a minute of the last line
        (60, 0.21, True),  # a minute on, and 21 points done since the last line
        (120, 0.24, False),  # three points: not worth a line
        (180, 0.26, True),  # five points since the last line
        (240, 0.26, False),
        (780, 0.26, True),  # ten minutes without a line
    ]
    assert [log.due("in_progress", now=NOW + t, done=done) for t, done, _ in polls] == [
        due for *_, due in polls
    ]


def test_the_marker_is_explained_once_with_the_records_it_adds_to() -> None:
    note = marker_note("msgbatch_1", records=2000)
    assert note.startswith("Batch msgbatch_1 holds 2,001 requests: the shard's 2,000 and one marker request")
    assert "the manifest do not" in note


def test_progress_line_of_an_ended_batch_gives_the_outcomes() -> None:
    created = datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()
    line = describe_progress(
        batch("ended", succeeded=90, errored=5, expired=5), now=created + 65, end_time=created + 99_999
    )
    assert "100 of 100 requests done (100%)" in line
    assert "90 succeeded, 5 errored, 0 canceled, 5 expired" in line
    assert "left before" not in line


@pytest.mark.parametrize(
    ("cancel", "last_status", "cancel_error", "expected"),
    [
        (False, "in_progress", None, "left running (cancel_on_timeout=False)"),
        (True, "in_progress", None, "It was canceled (cancel_on_timeout=True)"),
        (True, "canceling", None, "already canceling"),
        (True, "in_progress", "HTTP 500", "Cancelling it failed (HTTP 500)"),
        (False, None, None, "its status could not be read"),
    ],
)
def test_deadline_message_names_the_batch_and_what_was_done(
    cancel: bool, last_status: str | None, cancel_error: str | None, expected: str
) -> None:
    message = deadline_message(
        "msgbatch_abc",
        end_time=datetime(2027, 1, 16, 9, tzinfo=timezone.utc).timestamp(),
        last_status=last_status,
        cancel_on_timeout=cancel,
        cancel_error=cancel_error,
    )
    assert message.startswith(
        "Batch msgbatch_abc did not end before the wait's deadline 2027-01-16T09:00:00+00:00"
    )
    assert expected in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (0.25, "0.2s"),
        (9.96, "10.0s"),
        (12.7, "12s"),
        (59.9, "59s"),
        (61, "1m01s"),
        (3600, "1h00m"),
        (90_061, "25h01m"),
        (-61, "-1m01s"),
        (-0.5, "-0.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_batch_canceled_before_it_ended_says_how_many_requests_were_canceled_or_expired() -> None:
    batch = {"request_counts": {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 5, "expired": 2}}
    assert canceled_message("msgbatch_1", request_counts(batch)) == (
        "Batch msgbatch_1 was canceled before it ended: 5 requests canceled, 2 expired."
    )
