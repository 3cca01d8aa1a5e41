from __future__ import annotations

from pathlib import Path

import orjson

from airflow_claude_batch.core.reuse.answer_key import answer_key
from airflow_claude_batch.core.reuse.answer_store import AnswerStore
from airflow_claude_batch.core.reuse.reused_rows import REUSED_FROM, reused_row, saved_usd, store_answers
from airflow_claude_batch.core.run.outcomes import Outcome


def params(text: str) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}


def requests_file(tmp_path: Path, texts: dict[str, str]) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"custom_id": cid, "params": params(t)}) + b"\n" for cid, t in texts.items())
    )
    return path


def good(custom_id: str) -> dict:
    return {
        "custom_id": custom_id,
        "model": "claude-haiku-4-5",
        "text": f"answer of {custom_id}",
        "parsed": {"label": custom_id},
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "cost_usd": 0.002,
        "passthrough": {"title": "kept with the record, not the answer"},
    }


def test_only_good_answers_are_stored_and_come_back_as_free_succeeded_rows(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path / "root")
    path = requests_file(tmp_path, {"a": "one", "b": "two", "c": "three", "d": "four"})
    rows = [
        good("a"),
        {**good("b"), "outcome": Outcome.SUCCEEDED},  # a synchronous retry's answer
        {**good("c"), "outcome": Outcome.UNKNOWN, "cost_usd_upper": 0.1},
        {**good("d"), REUSED_FROM: {"run": "x"}},  # reused rows are not stored again
    ]
    assert store_answers(store, path, rows, run="/runs/r1", batch="msgbatch_9") == 2
    assert store.get(answer_key(params("three"))) is None
    assert store.get(answer_key(params("four"))) is None
    stored = store.get(answer_key(params("one")))
    assert stored is not None
    assert (stored.run, stored.batch, stored.custom_id) == (
        "/runs/r1",
        "msgbatch_9",
        "a",
    )
    assert "passthrough" not in stored.answer
    assert "custom_id" not in stored.answer
    row = reused_row("z-1", stored)
    assert row["custom_id"] == "z-1"
    assert (row["parsed"], row["text"], row["cost_usd"]) == ({"label": "a"}, "answer of a", 0.0)
    assert "usage" not in row  # nothing of this run prices it again
    assert row[REUSED_FROM]["batch"] == "msgbatch_9"
    assert saved_usd(row) == 0.002
    assert saved_usd(good("a")) == 0.0


def test_a_shards_succeeded_file_and_its_successful_synchronous_retries_are_stored(tmp_path: Path) -> None:
    from airflow_claude_batch.core.reuse.reused_rows import store_shard_answers, store_sync_answers
    from airflow_claude_batch.core.run.layout import RunFolder
    from airflow_claude_batch.core.run.storage import atomic_writer

    folder = RunFolder.for_run(tmp_path / "runs", "dag", "run_1", "claude_batch")
    store = AnswerStore(folder.storage_root)
    texts = {"a": "one", "b": "two", "c": "three"}
    with atomic_writer(folder.shard_requests(0, 0)) as out:
        out.write(requests_file(tmp_path, texts).read_bytes())
    with atomic_writer(folder.shard_outcome(0, 0, Outcome.SUCCEEDED)) as out:
        out.write(orjson.dumps(good("a")) + b"\n")
    with atomic_writer(folder.shard_outcome(0, 0, Outcome.INVALID_OUTPUT)) as out:
        out.write(orjson.dumps({**good("c"), "error": "not a label"}) + b"\n")
    with atomic_writer(folder.shard_sync_retry(0, 0)) as out:
        out.write(orjson.dumps({**good("b"), "outcome": Outcome.SUCCEEDED}) + b"\n")

    assert store_shard_answers(store, folder, 0, 0, "msgbatch_1") == 1
    assert store_sync_answers(store, folder, 0, 0) == 1
    assert (
        store_shard_answers(store, folder, 0, 0, "msgbatch_1") == 0
    )  # a retried fanout stores nothing twice

    assert store.get(answer_key(params("one"))).batch == "msgbatch_1"  # type: ignore[union-attr]
    assert store.get(answer_key(params("two"))).batch is None  # type: ignore[union-attr]
    assert store.get(answer_key(params("three"))) is None
