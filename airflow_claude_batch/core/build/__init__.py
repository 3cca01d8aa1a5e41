"""The build step: records to validated shards on storage with an estimate, what a rerun does when the
input changed, and the records the build sets aside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_claude_batch.core import lazy_exports

if TYPE_CHECKING:
    from airflow_claude_batch.core.build.build_step import build_run
    from airflow_claude_batch.core.build.input_change import (
        earlier_answers,
        parse_on_input_change,
        read_answered_earlier,
    )
    from airflow_claude_batch.core.build.input_fingerprint import fingerprint_input, read_fingerprint
    from airflow_claude_batch.core.build.rejections import DEFAULT_MAX_REJECTED_FRACTION, InvalidRecordPolicy

__all__ = [
    "DEFAULT_MAX_REJECTED_FRACTION",
    "InvalidRecordPolicy",
    "build_run",
    "earlier_answers",
    "fingerprint_input",
    "parse_on_input_change",
    "read_answered_earlier",
    "read_fingerprint",
]

# Each name is imported from its module on first use (PEP 562), so importing the stage loads nothing.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "build_step": ("build_run",),
        "input_change": ("earlier_answers", "parse_on_input_change", "read_answered_earlier"),
        "input_fingerprint": ("fingerprint_input", "read_fingerprint"),
        "rejections": ("DEFAULT_MAX_REJECTED_FRACTION", "InvalidRecordPolicy"),
    },
)
