"""The one retry policy of reads: what is retried, after how long, how often, and what is given up at once."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import anthropic
import httpx
import pytest

from airflow_claude_batch.hooks.api_errors import status_error, unreachable_cause
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.hooks.read_retries import ReadRetryPolicy, is_retryable, retry_delay


def answered(status: int, headers: dict[str, str] | None = None) -> anthropic.APIStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/v1/messages/batches")
    return status_error(httpx.Response(status, headers=headers, json={"type": "error"}, request=request))


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (529, True),
    ],
)
def test_which_answers_are_retried(status: int, retried: bool) -> None:
    assert is_retryable(answered(status)) is retried


def test_retry_after_is_honoured_up_to_a_minute() -> None:
    assert retry_delay(answered(429, {"retry-after": "2"}), attempt=3) == 2.0
    assert retry_delay(answered(529, {"retry-after-ms": "250"}), attempt=0) == 0.25
    assert retry_delay(answered(429, {"retry-after": "600"}), attempt=0) == 60.0


def test_without_retry_after_the_backoff_doubles_up_to_eight_seconds() -> None:
    first = [retry_delay(answered(500), attempt=0) for _ in range(50)]
    assert all(0.375 <= delay <= 0.5 for delay in first)
    assert all(1.5 <= retry_delay(answered(500), attempt=2) <= 2.0 for _ in range(50))
    assert all(6.0 <= retry_delay(answered(500), attempt=10) <= 8.0 for _ in range(50))


def test_a_loop_stops_after_max_retries_and_raises_the_last_error_as_it_was(emulator: Any) -> None:
    client = ClaudeBatchHook().get_conn().with_options(max_retries=0)
    emulator.faults({"fail_next": {"endpoint": "list", "status": 500, "count": 5, "retry_after": 0.01}})
    with pytest.raises(anthropic.InternalServerError):
        ReadRetryPolicy(max_retries=2).retrying()(client.messages.batches.list, limit=1)
    assert emulator.stats()["lists"] == 3


async def test_the_async_loop_waits_out_the_same_errors(emulator: Any) -> None:
    client = ClaudeBatchHook().get_async_conn(max_retries=0)
    emulator.faults({"fail_next": {"endpoint": "list", "status": 529, "count": 2, "retry_after": 0.01}})
    async for attempt in ReadRetryPolicy(max_retries=2).async_retrying():
        with attempt:
            page = await client.messages.batches.list(limit=1)
    assert page.data == []
    assert emulator.stats()["lists"] == 3


def test_an_unreachable_host_is_given_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = anthropic.Anthropic(api_key="unused", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    monkeypatch.setattr(time, "sleep", lambda _: pytest.fail("an unreachable host must not be retried"))
    calls: list[int] = []

    def list_batches() -> Any:
        calls.append(1)
        return client.messages.batches.list(limit=1)

    with pytest.raises(anthropic.APIConnectionError):
        ReadRetryPolicy(max_retries=5).retrying(give_up=unreachable_cause)(list_batches)
    assert len(calls) == 1


def test_the_first_call_of_a_hook_makes_at_most_max_retries_retries(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"conn_type": "claude-batch", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_ONE_RETRY", json.dumps({**fields, "extra": {"max_retries": 1}}))
    emulator.faults({"fail_next": {"endpoint": "list", "status": 500, "count": 5, "retry_after": 0.01}})
    with pytest.raises(anthropic.InternalServerError):
        list(ClaudeBatchHook("claude_one_retry").iter_batches())
    assert emulator.stats()["lists"] == 2
