"""The build step: records to validated shards on storage with an estimate, what a rerun does when the
input changed, and the records the build sets aside.
"""

from __future__ import annotations

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
