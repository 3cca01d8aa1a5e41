from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_claude_batch.core.reuse import AnswerStore, AnswerStoreLayout, StoredAnswer
from airflow_claude_batch.prune_answers import main


def stored(key: str, age: timedelta) -> StoredAnswer:
    when = (datetime.now(timezone.utc) - age).isoformat(timespec="seconds")
    return StoredAnswer(key, {"text": "x"}, 0.001, "/runs/r", "msgbatch_1", "c-1", stored_at=when)


def test_the_command_removes_answers_older_than_the_age_and_keeps_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AnswerStore(tmp_path)
    store.put(stored("a" * 64, timedelta(days=200)))
    store.put(stored("b" * 64, timedelta(days=10)))

    assert main(["--storage", f"file://{tmp_path}", "--older-than", "180d"]) == 0

    assert [path.name for path in AnswerStoreLayout(tmp_path).entries()] == [f"{'b' * 64}.json"]
    assert "removed 1 answer(s)" in capsys.readouterr().out


def test_an_age_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--storage", f"file://{tmp_path}", "--older-than", "True"])
