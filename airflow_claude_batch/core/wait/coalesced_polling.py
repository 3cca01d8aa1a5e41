"""Decisions for one poller that watches many batches through the list endpoint. No I/O.

``GET /v1/messages/batches?limit=1000`` returns the workspace's batches newest first, up to 1,000 a
call, so one call shows the state of every batch created since the 1,000th newest: a triggerer
waiting on 500 batches makes one call per cycle instead of 500. The poller of
:mod:`airflow_claude_batch.triggers.coalesced_poller` does the calls; this module decides:

- how deep to page (:func:`keep_paging`): only as far back as the oldest watched batch not yet seen,
  by its ``created_at``; a batch whose creation time is not known yet (a trigger re-created after a
  triggerer restart) is looked for in at most :data:`BLIND_LIST_PAGES` pages. A watched batch the list
  does not show is then retrieved on its own, once its trigger is due;
- when the next cycle may start (:func:`next_cycle_at`): when the first watching trigger is due, but
  never sooner than the organisation's rate budget allows after the calls of the last cycle
  (:class:`PollBudget`), nor sooner than a ``retry-after`` the API sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.api.headers import parse_timestamp
from airflow_claude_batch.core.wait.poll_errors import ErrorKind, PollError

#: The largest page the list endpoint serves (``limit`` ranges from 1 to 1,000).
LIST_PAGE_LIMIT = 1000
#: Pages read in one cycle at most, whatever the watched batches' age: beyond, retrieves.
MAX_LIST_PAGES = 100
#: Pages read in one cycle for batches whose creation time is not known yet.
BLIND_LIST_PAGES = 10
DEFAULT_BATCH_RPM_LIMIT = 50
DEFAULT_POLL_RPM_SHARE = 0.5


@dataclass(frozen=True)
class PollBudget:
    """The share of the organisation's batch requests-per-minute that one poller may use.

    The limit is shared by every batch endpoint (creates, polls, lists, cancels, results downloads)
    and by every process of the organisation: give polling a share and leave the rest to the others.

    :param rpm_limit: the organisation's batch requests-per-minute limit (50 to 4,000 by tier).
    :param share: the fraction, above 0 and at most 1, that this poller may spend.
    """

    rpm_limit: float = DEFAULT_BATCH_RPM_LIMIT
    share: float = DEFAULT_POLL_RPM_SHARE

    def __post_init__(self) -> None:
        if not self.rpm_limit > 0:
            raise ValueError(f"batch_rpm_limit must be a positive number of requests, not {self.rpm_limit!r}")
        if not 0 < self.share <= 1:
            raise ValueError(f"poll_rpm_share must be above 0 and at most 1, not {self.share!r}")

    @property
    def calls_per_minute(self) -> float:
        """The calls per minute polling may make."""
        return self.rpm_limit * self.share

    def min_gap(self, calls: int) -> float:
        """Return the seconds a cycle that made ``calls`` calls must leave before the next one starts.

        :param calls: the calls of the cycle (list pages and retrieves); at least one is counted.
        """
        return 60.0 * max(calls, 1) / self.calls_per_minute


@dataclass(frozen=True)
class ListPage:
    """One page of ``GET /v1/messages/batches``, as far as the poller needs it.

    :param batches: the batch objects, newest first.
    :param has_more: whether older batches follow.
    :param last_id: the cursor for the next (older) page.
    :param oldest_created_at: the ``created_at`` of the page's last batch, epoch seconds.
    """

    batches: tuple[dict[str, Any], ...]
    has_more: bool
    last_id: str | None
    oldest_created_at: float | None


def parse_list_page(body: bytes) -> tuple[ListPage | None, PollError | None]:
    """Return the page from a list call's response body, or the error when it is not a list page."""
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        page = None
    data = page.get("data") if isinstance(page, dict) else None
    if not isinstance(data, list) or not all(isinstance(batch, dict) for batch in data):
        return None, PollError(ErrorKind.REJECTED, status=200, detail="the answer is not a page of batches")
    last_id = page.get("last_id") if isinstance(page.get("last_id"), str) else None
    oldest = parse_timestamp(data[-1].get("created_at")) if data else None
    return ListPage(tuple(data), bool(page.get("has_more")), last_id, oldest), None


def keep_paging(page: ListPage, *, pages_read: int, missing_created_at: Iterable[float | None]) -> bool:
    """Return whether to read the page older than ``page``.

    :param page: the page just read.
    :param pages_read: pages read in this cycle, ``page`` included.
    :param missing_created_at: the creation times (``None``: not known yet) of the watched batches
        that no page read so far showed.
    """
    if not page.has_more or page.last_id is None or pages_read >= MAX_LIST_PAGES:
        return False
    known: float | None = None
    blind = False
    for created_at in missing_created_at:
        if created_at is None:
            blind = True
        elif known is None or created_at < known:
            known = created_at
    if known is not None and page.oldest_created_at is not None and known <= page.oldest_created_at:
        return True  # the oldest missing batch is older than this page: it can only be further back
    return blind and pages_read < BLIND_LIST_PAGES


def next_cycle_at(due_times: Iterable[float], *, not_before: float) -> float | None:
    """Return when the next cycle starts: the first due time, or ``not_before`` if later.

    :param due_times: when each waiting trigger wants its next look at its batch, epoch seconds.
    :param not_before: the earliest time the budget (and any ``retry-after``) allows.
    :returns: ``None`` when no trigger waits.
    """
    earliest = min(due_times, default=None)
    return None if earliest is None else max(earliest, not_before)


def calls_per_minute(calls: int, seconds: float) -> float:
    """Return ``calls`` made over ``seconds`` as calls per minute."""
    return 60.0 * calls / seconds if seconds > 0 else math.inf


def per_batch_calls_per_minute(batches: int, poll_interval: float) -> float:
    """Return the calls per minute that polling each batch on its own every ``poll_interval`` makes."""
    return batches * 60.0 / poll_interval
