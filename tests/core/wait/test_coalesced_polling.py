"""The coalesced poller's decisions, without I/O: the rate budget, how deep to page, when to call."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from airflow_claude_batch.core.wait import coalesced_polling
from airflow_claude_batch.core.wait.coalesced_polling import (
    BLIND_LIST_PAGES,
    MAX_LIST_PAGES,
    ListPage,
    PollBudget,
    keep_paging,
    next_cycle_at,
    parse_list_page,
    per_batch_calls_per_minute,
)
from airflow_claude_batch.core.wait.poll_errors import ErrorKind

T0 = 1_800_000_000.0


def page(
    oldest: float | None = T0, *, has_more: bool = True, last_id: str | None = "msgbatch_last"
) -> ListPage:
    return ListPage(batches=(), has_more=has_more, last_id=last_id, oldest_created_at=oldest)


@pytest.mark.parametrize(
    ("rpm_limit", "share", "calls", "gap"),
    [
        (50, 0.5, 1, 2.4),  # tier 1, half for polling: 25 calls a minute
        (50, 0.5, 10, 24.0),  # ten pages a cycle: ten times the gap
        (4000, 0.25, 1, 0.06),
        (50, 1.0, 0, 1.2),  # a cycle that made no call still counts as one
    ],
)
def test_the_budget_spaces_cycles_by_the_calls_they_made(rpm_limit, share, calls, gap) -> None:
    budget = PollBudget(rpm_limit=rpm_limit, share=share)
    assert budget.calls_per_minute == rpm_limit * share
    assert budget.min_gap(calls) == pytest.approx(gap)


@pytest.mark.parametrize(("rpm_limit", "share"), [(0, 0.5), (-5, 0.5), (50, 0), (50, 1.5), (50, -0.1)])
def test_a_budget_outside_its_range_is_refused(rpm_limit, share) -> None:
    with pytest.raises(ValueError, match=r"batch_rpm_limit|poll_rpm_share"):
        PollBudget(rpm_limit=rpm_limit, share=share)


def test_a_list_page_is_read_with_the_creation_time_of_its_oldest_batch() -> None:
    body = orjson.dumps(
        {
            "data": [
                {"id": "msgbatch_b", "created_at": "2027-01-15T10:00:05Z"},
                {"id": "msgbatch_a", "created_at": "2027-01-15T10:00:00.123456789Z"},
            ],
            "has_more": True,
            "first_id": "msgbatch_b",
            "last_id": "msgbatch_a",
        }
    )
    parsed, error = parse_list_page(body)
    assert error is None
    assert [batch["id"] for batch in parsed.batches] == ["msgbatch_b", "msgbatch_a"]
    assert parsed.has_more is True
    assert parsed.last_id == "msgbatch_a"
    assert (
        parsed.oldest_created_at == datetime(2027, 1, 15, 10, 0, 0, 123456, tzinfo=timezone.utc).timestamp()
    )


def test_an_empty_page_has_no_oldest_batch() -> None:
    parsed, error = parse_list_page(b'{"data": [], "has_more": false, "first_id": null, "last_id": null}')
    assert error is None
    assert parsed == ListPage(batches=(), has_more=False, last_id=None, oldest_created_at=None)


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"[]", b'{"data": {}}', b'{"data": [1]}', b"{}"])
def test_anything_but_a_page_of_batches_is_rejected(body: bytes) -> None:
    parsed, error = parse_list_page(body)
    assert parsed is None
    assert error.kind is ErrorKind.REJECTED
    assert not error.transient


def test_paging_stops_when_every_watched_batch_was_seen() -> None:
    assert keep_paging(page(), pages_read=1, missing_created_at=[]) is False


def test_paging_goes_on_while_the_oldest_missing_batch_is_older_than_the_page() -> None:
    assert keep_paging(page(oldest=T0), pages_read=1, missing_created_at=[T0 + 50, T0 - 10]) is True
    # Created in the same second as the page's oldest: it may be on the next page.
    assert keep_paging(page(oldest=T0), pages_read=1, missing_created_at=[T0]) is True


def test_paging_stops_once_past_the_oldest_missing_batch() -> None:
    # The page went back beyond it without showing it: the list does not have it, a retrieve will.
    assert keep_paging(page(oldest=T0), pages_read=3, missing_created_at=[T0 + 1]) is False


def test_paging_stops_at_the_end_of_the_list() -> None:
    assert keep_paging(page(has_more=False), pages_read=1, missing_created_at=[T0 - 100]) is False
    assert keep_paging(page(last_id=None), pages_read=1, missing_created_at=[T0 - 100]) is False


def test_paging_never_goes_past_the_page_cap() -> None:
    assert keep_paging(page(), pages_read=MAX_LIST_PAGES - 1, missing_created_at=[T0 - 100]) is True
    assert keep_paging(page(), pages_read=MAX_LIST_PAGES, missing_created_at=[T0 - 100]) is False


def test_batches_of_unknown_age_are_looked_for_in_a_few_pages_only() -> None:
    assert keep_paging(page(), pages_read=1, missing_created_at=[None]) is True
    assert keep_paging(page(), pages_read=BLIND_LIST_PAGES, missing_created_at=[None]) is False
    # A known older batch keeps paging past the blind limit; a known newer one does not.
    assert keep_paging(page(), pages_read=BLIND_LIST_PAGES, missing_created_at=[None, T0 - 1]) is True
    assert keep_paging(page(), pages_read=BLIND_LIST_PAGES, missing_created_at=[None, T0 + 1]) is False


def test_the_blind_limit_is_read_at_call_time(monkeypatch) -> None:
    monkeypatch.setattr(coalesced_polling, "BLIND_LIST_PAGES", 1)
    assert keep_paging(page(), pages_read=1, missing_created_at=[None]) is False


def test_the_next_cycle_is_the_first_due_time_unless_the_budget_says_later() -> None:
    assert next_cycle_at([T0 + 30, T0 + 5, T0 + 60], not_before=T0) == T0 + 5
    assert next_cycle_at([T0 + 30, T0 + 5], not_before=T0 + 12) == T0 + 12
    assert next_cycle_at([], not_before=T0) is None


def test_per_batch_polling_makes_one_call_per_batch_and_interval() -> None:
    assert per_batch_calls_per_minute(500, 60.0) == 500.0
    assert per_batch_calls_per_minute(500, 5.0) == 6000.0
