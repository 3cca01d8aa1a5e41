"""The emulator through the real anthropic SDK: every batch call a user makes parses and behaves."""

from __future__ import annotations

import time
from datetime import timedelta

import anthropic
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from tests.emulator.builders import requests


def _wait_ended(client: anthropic.Anthropic, batch_id: str) -> MessageBatch:
    for _ in range(200):
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not end")


def test_create_returns_an_in_progress_batch(emulator, sdk):
    emulator.faults({"processing_seconds": 60})
    batch = sdk.messages.batches.create(requests=requests(3))
    assert batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert batch.request_counts.succeeded == 0
    assert batch.results_url is None
    assert batch.ended_at is None
    assert batch.cancel_initiated_at is None
    assert batch.archived_at is None
    assert batch.expires_at - batch.created_at == timedelta(hours=24)


def test_results_through_the_sdk_cover_every_request(sdk, emulator):
    batch = sdk.messages.batches.create(requests=requests(25))
    ended = _wait_ended(sdk, batch.id)
    assert ended.request_counts.succeeded == 25
    assert ended.request_counts.processing == 0
    assert ended.ended_at is not None
    assert ended.ended_at >= ended.created_at
    assert ended.results_url == f"{emulator.base_url}/v1/messages/batches/{batch.id}/results"
    results = list(sdk.messages.batches.results(batch.id))
    assert all(isinstance(result, MessageBatchIndividualResponse) for result in results)
    assert sorted(result.custom_id for result in results) == sorted(f"r{index}" for index in range(25))
    first = results[0].result
    assert first.type == "succeeded"
    message = first.message
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.model == "claude-haiku-4-5"
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.service_tier == "batch"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


async def test_async_client_retrieves_and_streams_results(emulator):
    client = anthropic.AsyncAnthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    batch = await client.messages.batches.create(requests=requests(5))
    for _ in range(200):
        batch = await client.messages.batches.retrieve(batch.id)
        if batch.processing_status == "ended":
            break
    assert batch.processing_status == "ended"
    ids = [result.custom_id async for result in await client.messages.batches.results(batch.id)]
    assert sorted(ids) == [f"r{index}" for index in range(5)]
    await client.close()


def test_list_pages_newest_first(sdk):
    created = [sdk.messages.batches.create(requests=requests(1)).id for _ in range(5)]
    newest_first = list(reversed(created))

    page = sdk.messages.batches.list(limit=2)
    assert [batch.id for batch in page.data] == newest_first[:2]
    assert page.has_more is True
    assert page.first_id == newest_first[0]
    assert page.last_id == newest_first[1]

    # The SDK follows last_id as after_id until has_more is false.
    assert [batch.id for batch in sdk.messages.batches.list(limit=2)] == newest_first

    last_page = sdk.messages.batches.list(limit=2, after_id=newest_first[3])
    assert [batch.id for batch in last_page.data] == newest_first[4:]
    assert last_page.has_more is False

    newer = sdk.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [batch.id for batch in newer.data] == newest_first[1:3]
    assert newer.has_more is True


def test_list_default_limit_is_20(sdk):
    sdk.messages.batches.create(requests=requests(1))
    page = sdk.messages.batches.list()
    assert len(page.data) == 1
    assert page.has_more is False


def test_cancel_then_delete(emulator, sdk):
    emulator.faults({"processing_seconds": 60})
    batch = sdk.messages.batches.create(requests=requests(4))
    canceling = sdk.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 4
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.batches.delete(batch.id)

    ended = _wait_ended(sdk, batch.id)
    assert ended.request_counts.canceled == 4
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert [result.result.type for result in sdk.messages.batches.results(batch.id)] == ["canceled"] * 4

    deleted = sdk.messages.batches.delete(batch.id)
    assert deleted.id == batch.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.batches.retrieve(batch.id)
    assert batch.id not in [listed.id for listed in sdk.messages.batches.list()]


def test_unknown_batch_is_not_found(sdk):
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.batches.retrieve("msgbatch_01doesnotexist")
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_count_tokens_through_the_sdk(sdk, emulator):
    counted = sdk.messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "x" * 400}], system="y" * 40
    )
    assert counted.input_tokens == 110
    assert emulator.stats()["count_tokens"] == 1
