from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.reuse.answer_store import (
    SCHEMA_VERSION,
    AnswerStore,
    ReusePolicy,
    StoredAnswer,
    parse_reuse_answers,
    prune,
)
from airflow_claude_batch.core.reuse.store_layout import AnswerStoreLayout
from airflow_claude_batch.exceptions import InputError

KEY = "ab" * 32


def answer(key: str = KEY, text: str = "an answer", stored_at: str | None = None) -> StoredAnswer:
    extra = {"stored_at": stored_at} if stored_at else {}
    return StoredAnswer(
        key=key,
        answer={"model": "claude-haiku-4-5", "text": text, "parsed": None, "usage": {"output_tokens": 3}},
        cost_usd=0.0123,
        run="/storage/dag/run_1/claude_batch",
        batch="msgbatch_1",
        custom_id="c-1",
        **extra,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, None),
        (None, None),
        ("False", None),
        (True, ReusePolicy()),
        ("True", ReusePolicy()),
        ("30d", ReusePolicy(timedelta(days=30))),
        ("12h", ReusePolicy(timedelta(hours=12))),
        ("90m", ReusePolicy(timedelta(minutes=90))),
    ],
)
def test_reuse_answers_is_off_on_or_a_maximum_age(value: object, expected: ReusePolicy | None) -> None:
    assert parse_reuse_answers(value) == expected


@pytest.mark.parametrize("value", ["30", "0d", "1w", 30, "yes"])
def test_any_other_reuse_answers_is_refused_with_the_fix(value: object) -> None:
    with pytest.raises(InputError, match="'30d'"):
        parse_reuse_answers(value)


def test_an_answer_is_stored_whole_under_its_key_and_read_back(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    assert store.get(KEY) is None
    assert store.put(answer())
    path = AnswerStoreLayout(tmp_path).entry(KEY)
    assert path == tmp_path / "_answers" / "v1" / "ab" / f"{KEY}.json"
    assert orjson.loads(path.read_bytes())["schema_version"] == SCHEMA_VERSION
    assert store.get(KEY) == answer(stored_at=store.get(KEY).stored_at)  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{KEY}.json"]  # no temporary left


def test_the_first_answer_of_a_key_stays_when_several_runs_store_at_once(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def put(n: int) -> None:
        barrier.wait()
        results.append(store.put(answer(text=f"answer {n}")))

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    kept = store.get(KEY)
    assert kept is not None
    assert kept.answer["text"].startswith("answer ")


def test_an_entry_of_another_schema_or_unreadable_is_a_miss(tmp_path: Path) -> None:
    path = AnswerStoreLayout(tmp_path).entry(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(orjson.dumps({**orjson.loads(answer().to_bytes()), "schema_version": 99}))
    assert AnswerStore(tmp_path).get(KEY) is None
    path.write_bytes(b"{half an ans")
    assert AnswerStore(tmp_path).get(KEY) is None


def test_a_maximum_age_leaves_older_answers_out_and_prune_removes_them(tmp_path: Path) -> None:
    old = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat(timespec="seconds")
    young_key = "cd" * 32
    store = AnswerStore(tmp_path)
    store.put(answer(stored_at=old))
    store.put(answer(key=young_key))
    month = AnswerStore(tmp_path, ReusePolicy(timedelta(days=30)))
    assert month.get(KEY) is None
    assert month.get(young_key) is not None
    assert AnswerStore(tmp_path).get(KEY) is not None  # no maximum age: any age
    assert prune(tmp_path, timedelta(days=30)) == 1
    assert AnswerStore(tmp_path).get(KEY) is None
    assert AnswerStore(tmp_path).get(young_key) is not None


def test_an_answer_past_the_maximum_age_is_replaced_by_the_one_paid_for_again(tmp_path: Path) -> None:
    old = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat(timespec="seconds")
    AnswerStore(tmp_path).put(answer(text="last season's", stored_at=old))
    month = AnswerStore(tmp_path, ReusePolicy(timedelta(days=30)))
    assert month.get(KEY) is None  # a miss: the request is sent again

    assert month.put(answer(text="this month's")) is True

    fresh = month.get(KEY)
    assert fresh is not None
    assert fresh.answer["text"] == "this month's"  # the next run reuses it instead of paying again


def test_an_answer_a_lookup_still_takes_is_never_replaced(tmp_path: Path) -> None:
    month = AnswerStore(tmp_path, ReusePolicy(timedelta(days=30)))
    assert month.put(answer(text="first")) is True
    assert month.put(answer(text="second")) is False
    assert AnswerStore(tmp_path).put(answer(text="third")) is False  # no maximum age: any age is used
    stored = month.get(KEY)
    assert stored is not None
    assert stored.answer["text"] == "first"


def test_an_unreadable_entry_is_replaced_by_a_good_answer(tmp_path: Path) -> None:
    AnswerStoreLayout(tmp_path).entry(KEY).parent.mkdir(parents=True)
    AnswerStoreLayout(tmp_path).entry(KEY).write_bytes(b"{half an ans")

    assert AnswerStore(tmp_path).put(answer(text="whole")) is True

    stored = AnswerStore(tmp_path).get(KEY)
    assert stored is not None
    assert stored.answer["text"] == "whole"


def test_of_two_runs_replacing_an_aged_out_answer_the_first_wins(tmp_path: Path) -> None:
    old = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat(timespec="seconds")
    AnswerStore(tmp_path).put(answer(stored_at=old))
    month = AnswerStore(tmp_path, ReusePolicy(timedelta(days=30)))
    results: dict[int, bool] = {}
    barrier = threading.Barrier(6)

    def store(index: int) -> None:
        barrier.wait()
        results[index] = month.put(answer(text=f"run {index}"))

    threads = [threading.Thread(target=store, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [index for index, stored in results.items() if stored]
    assert len(winners) == 1, results
    stored = month.get(KEY)
    assert stored is not None
    assert stored.answer["text"] == f"run {winners[0]}"
