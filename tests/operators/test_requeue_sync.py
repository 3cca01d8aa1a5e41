"""The synchronous retry sends one request with ``messages.create``: it now runs against the emulator."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.core.requeue.sync_retry import SyncRequestError
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
    from airflow_claude_batch.core.money.pricing import PriceTable
    from airflow_claude_batch.core.requeue.requeue import requeue_round
    from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
    from airflow_claude_batch.core.run.layout import RunFolder
    from tests.core.batch_results import errored, expired, fanned_out_shard, read_rows

    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    shard = fanned_out_shard(folder, 0, [errored("a"), errored("b", "api_error"), expired("c")])
    client = anthropic.Anthropic(base_url=f"{emulator.base_url}/batches-only", api_key=emulator.api_key)
    sync = SyncRetry(synchronous_sender(client), PriceTable.load(), concurrency=1)
    record = requeue_round(folder, 0, [shard], sync=sync)
    client.close()
    assert (record.requeued, record.dead_lettered, record.sync_fell_back) == (3, 0, 2)
    rows = read_rows(folder.shard_sync_retry(0, 0))
    assert [(row["outcome"], row["sent"]) for row in rows] == [("fell_back", True), ("fell_back", False)]
    assert all(row["cost_usd"] == 0.0 for row in rows)


# --- only a definite refusal may send the request again ------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409])
def test_a_5xx_or_an_unsettled_4xx_is_an_unknown_outcome_never_a_refusal(emulator, status):
    emulator.faults({"fail_next": {"endpoint": "messages", "status": status, "count": 1}})
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client)(PARAMS)
    client.close()
    assert raised.value.outcome_unknown is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 429, 529])
def test_a_4xx_with_the_apis_error_body_429_and_529_are_definite_refusals(emulator, status):
    emulator.faults({"fail_next": {"endpoint": "messages", "status": status, "count": 1}})
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client, sleep=lambda _: None)(PARAMS) if status != 429 else _once_429(client)
    client.close()
    assert raised.value.outcome_unknown is False


def _once_429(client):
    # a 429 without retry-after is given up at once (rate_limit_error, requeued): nothing was processed
    return synchronous_sender(client, sleep=lambda _: None)(PARAMS)


def test_a_timeout_after_sending_is_an_unknown_outcome(emulator):
    emulator.faults({"latency_ms": 3000})
    client = anthropic.Anthropic(
        base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0, timeout=0.5
    )
    try:
        with pytest.raises(SyncRequestError) as raised:
            synchronous_sender(client)(PARAMS)
    finally:
        emulator.faults({"latency_ms": 0})
        client.close()
    assert (raised.value.error_type, raised.value.outcome_unknown) == ("timeout_error", True)


def test_a_refused_connection_is_definitely_not_sent():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-test", max_retries=0)
    with pytest.raises(SyncRequestError) as raised:
        synchronous_sender(client)(PARAMS)
    client.close()
    assert (raised.value.endpoint_fault, raised.value.outcome_unknown) == (True, False)


def test_a_gateway_504_on_a_synchronous_retry_is_pending_and_possibly_billed_not_requeued(emulator, tmp_path):
    from airflow_claude_batch.core.money.pricing import PriceTable
    from airflow_claude_batch.core.report.ledger import write_ledger
    from airflow_claude_batch.core.requeue.requeue import requeue_round
    from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
    from airflow_claude_batch.core.run.layout import RunFolder
    from tests.core.batch_results import errored, fanned_out_shard, read_rows, succeeded, write_shard_list

    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    shard = fanned_out_shard(folder, 0, [succeeded("a"), errored("b"), errored("c")])
    write_shard_list(folder, 0, [shard])
    emulator.faults({"fail_next": {"endpoint": "messages", "status": 504, "count": 1}})
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    record = requeue_round(
        folder, 0, [shard], sync=SyncRetry(synchronous_sender(client), PriceTable.load(), concurrency=1)
    )
    client.close()

    assert (record.sync_unknown, record.sync_succeeded, record.requeued, record.next_shards) == (1, 1, 0, [])
    manifest, _ = write_ledger(folder, prices=PriceTable.load(), max_rounds=2)
    [pending] = read_rows(folder.pending)
    assert (pending["custom_id"], pending["reason"]) == ("b", "sync_outcome_unknown")
    assert manifest.money.sync_retry_unknown_usd > 0
    assert manifest.money.sync_retry_usd > 0  # c's answer, billed at standard prices
    assert manifest.money.actual_upper_usd > manifest.money.actual_usd
    assert manifest.reconciled, manifest.notes
