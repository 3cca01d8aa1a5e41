"""The build's lookup: a hit is not sent, a miss is, and what is sent is all the estimate counts."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.build.build_step import build_run
from airflow_claude_batch.core.money.pricing import PRICES_ENV_VAR
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.request_lines import iter_request_lines
from airflow_claude_batch.core.requests.sources import FileRecords
from airflow_claude_batch.core.reuse.answer_store import AnswerStore
from airflow_claude_batch.core.reuse.reused_rows import REUSED_FROM, store_answers
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import iter_jsonl

TEMPLATE = RequestTemplate(model="claude-haiku-4-5", max_tokens=32, system="Summarise the chunk.")


@pytest.fixture(autouse=True)
def shipped_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV_VAR, raising=False)


def chunks(path: Path, texts: dict[str, str]) -> FileRecords:
    path.write_text("".join(json.dumps({"id": cid, "text": text}) + "\n" for cid, text in texts.items()))
    return FileRecords([path])


def answer_everything(folder: RunFolder, store: AnswerStore, shards: tuple) -> None:
    """What the fanout does for a shard whose every request succeeded."""
    for shard in shards:
        path = folder.shard_requests(0, shard.index)
        rows = [
            {"custom_id": cid, "text": f"summary of {cid}", "parsed": None, "cost_usd": 0.001}
            for cid, _ in iter_request_lines(path)
        ]
        store_answers(store, path, rows, run=str(folder.root), batch=f"msgbatch_{shard.index}")


def sent_ids(shards: tuple) -> list[str]:
    return [cid for shard in shards for cid, _ in iter_request_lines(Path(shard.uri))]


def test_a_second_build_sends_only_the_changed_and_new_chunks(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    store = AnswerStore(root)
    january = RunFolder.for_run(root, "rag", "2026-01", "enrich")
    texts = {f"c-{n}": f"chunk {n}" for n in range(10)}
    first = build_run(chunks(tmp_path / "jan.jsonl", texts), TEMPLATE, january, answer_store=store)
    assert len(sent_ids(first.shards)) == 10
    answer_everything(january, store, first.shards)

    february = RunFolder.for_run(root, "rag", "2026-02", "enrich")
    texts["c-3"] = "chunk 3, edited"
    texts["c-10"] = "a new chunk"
    second = build_run(chunks(tmp_path / "feb.jsonl", texts), TEMPLATE, february, answer_store=store)
    assert sorted(sent_ids(second.shards)) == ["c-10", "c-3"]
    assert second.estimate is not None
    assert second.estimate.records == 2
    reused = list(iter_jsonl(february.reused))
    assert sorted(row["custom_id"] for row in reused) == sorted(set(texts) - {"c-3", "c-10"})
    assert all(row["cost_usd"] == 0.0 and row[REUSED_FROM]["run"] == str(january.root) for row in reused)
    estimate = orjson.loads(Path(str(february.estimate)).read_bytes())
    assert (estimate["records"], estimate["reused_records"]) == (2, 9)
    assert estimate["reused_saved_usd"] == pytest.approx(0.009)


def test_everything_answered_builds_no_shard_and_another_model_is_a_miss(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    store = AnswerStore(root)
    texts = {f"c-{n}": f"chunk {n}" for n in range(4)}
    first_folder = RunFolder.for_run(root, "rag", "r1", "enrich")
    first = build_run(chunks(tmp_path / "a.jsonl", texts), TEMPLATE, first_folder, answer_store=store)
    answer_everything(first_folder, store, first.shards)
    again = build_run(
        chunks(tmp_path / "a.jsonl", texts),
        TEMPLATE,
        RunFolder.for_run(root, "rag", "r2", "enrich"),
        answer_store=store,
    )
    assert again.shards == ()
    other_model = RequestTemplate(model="claude-sonnet-4-5", max_tokens=32, system="Summarise the chunk.")
    third = build_run(
        chunks(tmp_path / "a.jsonl", texts),
        other_model,
        RunFolder.for_run(root, "rag", "r3", "enrich"),
        answer_store=store,
    )
    assert len(sent_ids(third.shards)) == 4


def test_a_dry_run_counts_hits_and_writes_no_row(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    store = AnswerStore(root)
    texts = {"c-1": "one", "c-2": "two"}
    folder = RunFolder.for_run(root, "rag", "r1", "enrich")
    answer_everything(
        folder,
        store,
        build_run(chunks(tmp_path / "a.jsonl", texts), TEMPLATE, folder, answer_store=store).shards,
    )
    dry = RunFolder.for_run(root, "rag", "r2", "enrich")
    result = build_run(chunks(tmp_path / "a.jsonl", texts), TEMPLATE, dry, answer_store=store, dry_run=True)
    assert result.estimate is not None
    assert result.estimate.records == 0
    assert not Path(str(dry.reused)).exists()
    assert orjson.loads(Path(str(dry.estimate)).read_bytes())["reused_records"] == 2
