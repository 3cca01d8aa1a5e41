"""Waiting for a batch: when to poll again, one list call for many batches, why a poll failed, and the
progress lines a person reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.wait.coalesced_polling import (
        LIST_PAGE_LIMIT,
        ListPage,
        PollBudget,
        keep_paging,
        next_cycle_at,
        parse_list_page,
    )
    from airflow_claude_batch.core.wait.poll_errors import (
        ErrorKind,
        PollError,
        parse_batch,
        poll_error_from_exception,
    )
    from airflow_claude_batch.core.wait.poll_messages import (
        ProgressLog,
        canceled_message,
        deadline_message,
        describe_progress,
        failure_message,
        format_duration,
        marker_note,
        progress_line,
        request_counts,
    )
    from airflow_claude_batch.core.wait.polling import (
        CANCELING,
        DEFAULT_DEADLINE_MARGIN_S,
        DEFAULT_POLL_INTERVAL_S,
        ENDED,
        PollAction,
        PollDecision,
        PollPolicy,
        decide_on_batch,
        decide_on_error,
        default_end_time,
        first_poll_delay,
    )

__all__ = [
    "CANCELING",
    "DEFAULT_DEADLINE_MARGIN_S",
    "DEFAULT_POLL_INTERVAL_S",
    "ENDED",
    "LIST_PAGE_LIMIT",
    "ErrorKind",
    "ListPage",
    "PollAction",
    "PollBudget",
    "PollDecision",
    "PollError",
    "PollPolicy",
    "ProgressLog",
    "canceled_message",
    "deadline_message",
    "decide_on_batch",
    "decide_on_error",
    "default_end_time",
    "describe_progress",
    "failure_message",
    "first_poll_delay",
    "format_duration",
    "keep_paging",
    "marker_note",
    "next_cycle_at",
    "parse_batch",
    "parse_list_page",
    "poll_error_from_exception",
    "progress_line",
    "request_counts",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "coalesced_polling": (
            "LIST_PAGE_LIMIT",
            "ListPage",
            "PollBudget",
            "keep_paging",
            "next_cycle_at",
            "parse_list_page",
        ),
        "poll_errors": ("ErrorKind", "PollError", "parse_batch", "poll_error_from_exception"),
        "poll_messages": (
            "ProgressLog",
            "canceled_message",
            "deadline_message",
            "describe_progress",
            "failure_message",
            "format_duration",
            "marker_note",
            "progress_line",
            "request_counts",
        ),
        "polling": (
            "CANCELING",
            "DEFAULT_DEADLINE_MARGIN_S",
            "DEFAULT_POLL_INTERVAL_S",
            "ENDED",
            "PollAction",
            "PollDecision",
            "PollPolicy",
            "decide_on_batch",
            "decide_on_error",
            "default_end_time",
            "first_poll_delay",
        ),
    },
)
