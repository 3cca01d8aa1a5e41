"""The synchronous retry sends one request with ``messages.create``: it now runs against the emulator."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.batch.requeue import SyncRequestError
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
