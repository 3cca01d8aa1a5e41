"""The synchronous retry sends one request with ``messages.create``: it now runs against the emulator."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.batch.sync_retry import SyncRequestError
from airflow_claude_batch.operators.requeue import synchronous_sender

PARAMS = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "system": "You sort support tickets.\nLabels: billing, bug, other\n",
    "messages": [{"role": "user", "content": "Please refund the double charge"}],
}


@pytest.fixture
def send(emulator):
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    yield synchronous_sender(client)
    client.close()


def test_a_synchronous_retry_gets_an_answer_at_standard_rates(send):
    message = send(PARAMS)
    assert message["content"][0]["text"].startswith('{"label":"billing"')
    assert message["usage"]["service_tier"] == "standard"


def test_a_refused_synchronous_retry_keeps_the_api_error_type(send):
    with pytest.raises(SyncRequestError) as raised:
        send({**PARAMS, "model": "claude-haiku-4-6"})
    assert raised.value.error_type == "not_found_error"
    with pytest.raises(SyncRequestError) as raised:
        send({**PARAMS, "stop_sequences": ["  "]})
    assert raised.value.error_type == "invalid_request_error"
    assert "stop_sequences.0" in str(raised.value)


def test_a_call_the_sdk_refuses_to_send_is_an_error_not_a_crash(send):
    # The SDK refuses non-streaming calls that may take over 10 minutes (a large max_tokens).
    with pytest.raises(SyncRequestError) as raised:
        send({**PARAMS, "max_tokens": 60_000})
    assert raised.value.error_type == "invalid_request_error"


def test_a_missing_synchronous_endpoint_is_the_endpoints_fault_not_the_requests(emulator):
    # a gateway that forwards only the batch endpoints: every other path is a 404
    client = anthropic.Anthropic(base_url=f"{emulator.base_url}/batches-only", api_key=emulator.api_key)
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client)(PARAMS)
    client.close()
    assert raised.value.endpoint_fault is True


def test_an_unreachable_endpoint_is_the_endpoints_fault():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-test", max_retries=0)
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client)(PARAMS)
    client.close()
    assert raised.value.endpoint_fault is True


def test_a_429_is_waited_out_for_its_retry_after(emulator):
    emulator.faults({"fail_next": {"endpoint": "messages", "status": 429, "count": 2, "retry_after": 7}})
    waited: list[float] = []
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    message = synchronous_sender(client, sleep=waited.append)(PARAMS)
    assert waited == [7.0, 7.0]
    assert message["usage"]["service_tier"] == "standard"
    emulator.faults({"fail_next": {"endpoint": "messages", "status": 429, "count": 4, "retry_after": 1}})
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client, sleep=waited.append)(PARAMS)
    client.close()
    assert (raised.value.error_type, raised.value.endpoint_fault) == ("rate_limit_error", False)


def test_retryable_errors_are_requeued_not_dead_lettered_when_the_endpoint_is_missing(emulator, tmp_path):
    from airflow_claude_batch.batch.pricing import PriceTable
    from airflow_claude_batch.batch.requeue import requeue_round
    from airflow_claude_batch.batch.round_files import sync_retry_path
    from airflow_claude_batch.batch.runfolder import RunFolder
    from airflow_claude_batch.batch.sync_retry import SyncRetry
    from tests.batch.batch_results import errored, expired, fanned_out_shard, read_rows

    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    shard = fanned_out_shard(folder, 0, [errored("a"), errored("b", "api_error"), expired("c")])
    client = anthropic.Anthropic(base_url=f"{emulator.base_url}/batches-only", api_key=emulator.api_key)
    sync = SyncRetry(synchronous_sender(client), PriceTable.load(), concurrency=1)
    record = requeue_round(folder, 0, [shard], sync=sync)
    client.close()
    assert (record.requeued, record.dead_lettered, record.sync_fell_back) == (3, 0, 2)
    rows = read_rows(sync_retry_path(folder, 0, 0))
    assert [(row["outcome"], row["sent"]) for row in rows] == [("fell_back", True), ("fell_back", False)]
    assert all(row["cost_usd"] == 0.0 for row in rows)
