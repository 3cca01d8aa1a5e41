"""Stop reasons that are no answer, asked of the emulator with its prompt trigger, through the real SDK
over HTTP, and routed by the fanout into their own outcomes: ``refusal`` (``refused.jsonl``, final),
``model_context_window_exceeded`` (dead-lettered with the fix), ``pause_turn`` and ``max_tokens``
(invalid output with the reason)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.report_page import render_report
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.results.flat_output import iter_succeeded_rows
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, iter_jsonl, write_json
from airflow_claude_batch.emulator.answers.replies import REFUSAL_TEXT, TRIGGERED_STOP_REASONS

MODEL = "claude-sonnet-4-6"


def trigger(reason: str) -> str:
    return f"Classify this ticket: my invoice is wrong. [[emulator:stop_reason={reason}]]"


def params(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]}


@pytest.fixture
def client(emulator: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)


@pytest.mark.parametrize("reason", TRIGGERED_STOP_REASONS)
def test_the_prompt_trigger_ends_a_synchronous_answer_with_that_stop_reason(
    client: anthropic.Anthropic, reason: str
) -> None:
    message = client.messages.create(**params(trigger(reason)))

    assert message.stop_reason == reason
    assert message.usage.output_tokens >= 1
    if reason == "refusal":
        assert message.stop_details is not None
        assert message.stop_details.type == "refusal"
        assert message.content[0].text == REFUSAL_TEXT  # type: ignore[union-attr]
    else:
        assert message.stop_details is None


def test_an_ordinary_prompt_ends_its_turn_without_stop_details(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**params("Classify this ticket: my invoice is wrong."))

    assert message.stop_reason == "end_turn"
    assert message.stop_details is None


def _shard(folder: RunFolder, requests: dict[str, str]) -> ShardDescriptor:
    path = folder.shard_requests(0, 0)
    lines = [
        orjson.dumps({"custom_id": custom_id, "params": params(prompt)}) + b"\n"
        for custom_id, prompt in requests.items()
    ]
    with atomic_writer(path) as out:
        out.write(b"".join(lines))
    shard = ShardDescriptor(
        run_uri=str(folder.root),
        round=0,
        index=0,
        uri=str(path),
        request_count=len(lines),
        body_bytes=sum(len(line) for line in lines),
    )
    write_json(folder.shard_list(0), [shard.to_dict()])
    write_json(folder.estimate, {"records": len(lines)})
    return shard


def _ended_results(client: anthropic.Anthropic, requests: dict[str, str]) -> list[dict[str, Any]]:
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": custom_id, "params": params(prompt)} for custom_id, prompt in requests.items()
        ]  # type: ignore[misc]
    )
    deadline = time.monotonic() + 60
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline, "the emulator's batch did not end in 60 s"
        time.sleep(0.2)
    return [result.model_dump(mode="json") for result in client.messages.batches.results(batch.id)]


def test_stop_reasons_of_a_batch_become_outcomes_and_the_manifest_adds_up(
    client: anthropic.Anthropic, tmp_path: Path
) -> None:
    requests = {
        "answered": "Classify this ticket: my invoice is wrong.",
        "declined": trigger("refusal"),
        "paused": trigger("pause_turn"),
        "too-long": trigger("model_context_window_exceeded"),
        "cut": trigger("max_tokens"),
    }
    folder = RunFolder(tmp_path / "run")
    _shard(folder, requests)
    results = _ended_results(client, requests)
    prices = PriceTable.load()

    summary = fan_out_shard(
        folder=folder,
        round_index=0,
        shard_index=0,
        requests_path=folder.shard_requests(0, 0),
        open_results=lambda: iter(results),
        prices=prices,
    )

    assert summary.outcome_counts == {
        "succeeded": 1,
        "invalid_output": 2,
        "errored": 1,
        "expired": 0,
        "canceled": 0,
        "refused": 1,
    }
    (refused,) = iter_jsonl(folder.shard_outcome(0, 0, "refused"))
    assert refused["custom_id"] == "declined"
    assert refused["stop_reason"] == "refusal"
    assert refused["stop_details"]["type"] == "refusal"
    assert refused["cost_usd"] > 0
    invalid = {
        row["custom_id"]: row["error"] for row in iter_jsonl(folder.shard_outcome(0, 0, "invalid_output"))
    }
    assert "pause_turn" in invalid["paused"]
    assert "max_tokens" in invalid["cut"]
    (errored,) = iter_jsonl(folder.shard_outcome(0, 0, "errored"))
    assert errored["error_type"] == "model_context_window_exceeded"
    assert errored["retryable"] is False

    manifest, samples = write_ledger(folder, prices=prices, max_rounds=1)

    assert manifest.reconciled, manifest.notes
    assert manifest.dispositions == {
        "succeeded": 1,
        "invalid_output": 2,
        "refused": 1,
        "dead_lettered": 1,
        "pending": 0,
        "rejected": 0,
    }
    (dead,) = iter_jsonl(folder.dead_letter)
    assert dead["custom_id"] == "too-long"
    assert "shorten the prompt" in dead["reason"]
    assert "shorten the prompt" in dead["message"]
    # every billed message counts in the money, the ones that are no answer too
    assert manifest.tokens["output"] == sum(
        row["result"]["message"]["usage"]["output_tokens"] for row in results
    )
    assert [row["custom_id"] for row in iter_succeeded_rows(folder, 1)] == ["answered"]
    assert '<div class="card">refused<b>1</b></div>' in render_report(manifest, samples)
