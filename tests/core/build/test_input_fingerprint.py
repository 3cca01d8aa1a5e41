"""The build's input fingerprint: what counts as a change, said in words a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.build import input_fingerprint
from airflow_claude_batch.core.build.input_fingerprint import (
    InputFingerprint,
    fingerprint_input,
    read_fingerprint,
    write_fingerprint,
)
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sources import CallableRecords, FileRecords
from airflow_claude_batch.core.run.layout import RunFolder

TEMPLATE = RequestTemplate(model="claude-haiku-4-5", max_tokens=16)


def fingerprint(paths: list[Path], template: RequestTemplate = TEMPLATE) -> InputFingerprint:
    return fingerprint_input(FileRecords(paths), template, data_interval=("a", "b"))


def test_an_untouched_input_has_no_changes_and_survives_storage(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "1", "text": "x"}\n')
    first = fingerprint([data])
    folder = RunFolder(tmp_path / "run")
    (tmp_path / "run").mkdir()
    write_fingerprint(folder, first)

    assert read_fingerprint(folder) == first
    assert fingerprint([data]).changes_since(first) == []
    assert first.sources == (str(data),)


def test_growth_new_files_gone_files_and_settings_are_named(tmp_path: Path) -> None:
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    one.write_text('{"id": "1", "text": "x"}\n')
    two.write_text('{"id": "2", "text": "y"}\n')
    before = fingerprint([one])
    one.write_text('{"id": "1", "text": "x"}\n{"id": "3", "text": "z"}\n')

    changes = fingerprint([two, one], RequestTemplate(model="claude-sonnet-4-6")).changes_since(before)

    assert any("changed size" in change and str(one) in change for change in changes)
    assert any(change == f"{two} is new" for change in changes)
    assert any("request settings" in change for change in changes)
    assert f"{one} is gone" in fingerprint([two]).changes_since(before)


def test_a_callable_source_is_known_by_its_name() -> None:
    def tickets() -> list[dict[str, str]]:
        return []

    described = fingerprint_input(CallableRecords(tickets), TEMPLATE)
    assert described.files is None
    assert described.sources is None
    assert described.source_name == "tickets()"


class FlakyStatPath(type(Path())):  # type: ignore[misc]
    """A local path whose ``stat`` fails its first ``failures`` calls (a store's hiccup)."""

    failures = 0

    def stat(self, *args: Any, **kwargs: Any) -> Any:
        if FlakyStatPath.failures > 0:
            FlakyStatPath.failures -= 1
            raise OSError(5, "Input/output error (injected)")
        return super().stat(*args, **kwargs)


@pytest.fixture
def no_stat_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(input_fingerprint, "STAT_RETRY_DELAYS_SECONDS", (0.0,))


def test_a_failed_stat_is_tried_again(tmp_path: Path, no_stat_delay: None) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "1", "text": "x"}\n')
    FlakyStatPath.failures = input_fingerprint.STAT_ATTEMPTS - 1

    described = fingerprint([FlakyStatPath(data)])

    assert described.files is not None
    assert described.files[0].size == data.stat().st_size
    assert FlakyStatPath.failures == 0


def test_a_stat_that_stays_failed_is_unknown_and_unknown_is_never_a_change(
    tmp_path: Path, no_stat_delay: None
) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "1", "text": "x"}\n')
    FlakyStatPath.failures = input_fingerprint.STAT_ATTEMPTS
    unknown = fingerprint([FlakyStatPath(data)])
    folder = RunFolder(tmp_path / "run")
    (tmp_path / "run").mkdir()
    write_fingerprint(folder, unknown)
    stored = read_fingerprint(folder)

    assert stored is not None
    assert stored.files is not None
    assert (stored.files[0].size, stored.files[0].version) == (None, None)
    known = fingerprint([data])
    # The rerun over the unchanged file (before: "changed size from None to 25 bytes", every time).
    assert known.changes_since(stored) == []
    assert stored.changes_since(known) == []
    # A field known to both builds still shows a change.
    data.write_text('{"id": "1", "text": "x"}\n{"id": "2", "text": "y"}\n')
    assert any("changed size" in change for change in fingerprint([data]).changes_since(known))
