"""The outcome vocabulary: values unchanged, and spelled in ``core/run/outcomes.py`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.run.outcomes import (
    BILLED_OUTCOMES,
    DISPOSITIONS,
    RESULT_TYPES,
    ROW_OUTCOMES,
    Disposition,
    Outcome,
    PendingReason,
)

PACKAGE = Path(__file__).resolve().parents[3] / "airflow_claude_batch"
OUTCOMES_MODULE = PACKAGE / "core" / "run" / "outcomes.py"
VOCABULARY = {member.value for enum in (Outcome, Disposition, PendingReason) for member in enum}

#: The same words naming something else, each with what it names.
OTHER_MEANINGS = {
    # a poll the API refused (a 4xx), a kind of poll error, not a record's disposition
    ("core/wait/poll_errors.py", "rejected"),
    # an owner record's sources nobody recorded, not a request's outcome
    ("core/run/output_owner.py", "unknown"),
    # the manifest's field for the run's cancel record (``cancel.json``), not a row's outcome
    ("core/report/manifest.py", "canceled"),
    ("core/report/run_summary.py", "canceled"),
    ("ui/page.py", "canceled"),
    # a run without a logical time falls in no night
    ("ui/run_rows.py", "unknown"),
}


def test_the_values_are_the_names_in_files_and_manifests() -> None:
    assert ROW_OUTCOMES == ("succeeded", "invalid_output", "errored", "expired", "canceled", "refused")
    assert DISPOSITIONS == ("succeeded", "invalid_output", "refused", "dead_lettered", "pending", "rejected")
    assert RESULT_TYPES == ("succeeded", "errored", "canceled", "expired")
    assert BILLED_OUTCOMES == ("succeeded", "invalid_output", "refused")
    assert (Outcome.UNKNOWN, Outcome.FELL_BACK, Outcome.NOT_SUBMITTED) == (
        "unknown",
        "fell_back",
        "not_submitted",
    )
    assert (PendingReason.CANCELED, PendingReason.SYNC_OUTCOME_UNKNOWN) == (
        "canceled",
        "sync_outcome_unknown",
    )


def test_a_member_is_written_as_its_value() -> None:
    assert orjson.dumps({"outcome": Outcome.INVALID_OUTPUT}) == b'{"outcome":"invalid_output"}'
    assert f"{Disposition.DEAD_LETTERED}" == "dead_lettered"
    # the groups hold plain strings, so a dict keyed by them is written as before
    assert orjson.dumps(dict.fromkeys(ROW_OUTCOMES, 0)).startswith(b'{"succeeded":0')


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def spelled_outcomes(source: str) -> list[tuple[int, str]]:
    """``(line, value)`` of every string literal that is exactly an outcome, disposition or pending
    reason (docstrings left out)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in VOCABULARY
        and id(node) not in docstrings
    ]


def test_no_core_or_shell_module_spells_an_outcome() -> None:
    spelled = {
        f"{path.relative_to(PACKAGE)}:{line}": value
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OUTCOMES_MODULE and "emulator" not in path.parts
        for line, value in spelled_outcomes(path.read_text(encoding="utf-8"))
        if (str(path.relative_to(PACKAGE)), value) not in OTHER_MEANINGS
    }
    assert spelled == {}, "name these through core/run/outcomes.py (Outcome, Disposition, PendingReason)"


@pytest.mark.parametrize(
    "source",
    [
        'if row["outcome"] == "succeeded": pass',
        'counts = {"dead_lettered": 0}',
        'return RoutedRow("invalid_output", row)',
        'REASON = "sync_outcome_unknown"',
    ],
)
def test_the_check_catches_a_spelled_outcome(source: str) -> None:
    assert spelled_outcomes(source)


def test_the_check_leaves_docstrings_and_longer_texts_alone() -> None:
    source = (
        '"""Rows that ``succeeded``."""\n'
        "def f():\n"
        '    """pending"""\n'
        '    return "2 succeeded", "pending.jsonl"\n'
    )
    assert spelled_outcomes(source) == []
