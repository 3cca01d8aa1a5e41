"""The run's report: the ledger that scans the run folder into ``manifest.json``, the manifest's shape,
the page a person reads, and the budget left after a round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.report.ledger import accounting_failure, is_dry_run, write_ledger
    from airflow_claude_batch.core.report.report_page import write_report
    from airflow_claude_batch.core.report.round_budget import round_budget
    from airflow_claude_batch.core.report.run_summary import (
        UNKNOWN,
        NightTotals,
        RunSummary,
        SummaryCache,
        nightly_totals,
        summary_from_manifest,
        summary_from_report_result,
    )

__all__ = [
    "UNKNOWN",
    "NightTotals",
    "RunSummary",
    "SummaryCache",
    "accounting_failure",
    "is_dry_run",
    "nightly_totals",
    "round_budget",
    "summary_from_manifest",
    "summary_from_report_result",
    "write_ledger",
    "write_report",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ledger": ("accounting_failure", "is_dry_run", "write_ledger"),
        "report_page": ("write_report",),
        "round_budget": ("round_budget",),
        "run_summary": (
            "UNKNOWN",
            "NightTotals",
            "RunSummary",
            "SummaryCache",
            "nightly_totals",
            "summary_from_manifest",
            "summary_from_report_result",
        ),
    },
)
