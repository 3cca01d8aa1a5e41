"""The ``emulator`` fixture: a reset server, a working key and the default Airflow connection."""

from __future__ import annotations

import json
import os

import anthropic
import pytest

from tests.fixtures.emulator import DEFAULT_CONN_ENV


def _request(custom_id: str) -> dict:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}],
        },
    }


def test_fixture_serves_the_sdk_with_its_key(emulator):
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
    batch = client.messages.batches.create(requests=[_request("a"), _request("b")])
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    assert emulator.stats()["batches_created"] == 1


def test_fixture_resets_between_tests(emulator):
    assert emulator.stats()["batches_created"] == 0
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
    assert list(client.messages.batches.list()) == []


def test_fixture_rejects_other_keys(emulator):
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="some-other-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.batches.list()


def test_fixture_sets_the_default_connection(emulator):
    conn = json.loads(os.environ[DEFAULT_CONN_ENV])
    assert conn == {"conn_type": "claude-batch", "host": emulator.base_url, "password": emulator.api_key}


def test_connection_uri_round_trips_through_airflow(emulator):
    from airflow.models.connection import Connection

    from_uri = Connection(conn_id="x", uri=emulator.connection_uri)
    assert from_uri.conn_type == "claude_batch"
    assert from_uri.host == emulator.base_url
    assert from_uri.password == emulator.api_key


def test_make_emulator_starts_a_server_with_its_own_settings(make_emulator):
    handle = make_emulator(window_seconds=5.0)
    client = anthropic.Anthropic(base_url=handle.base_url, api_key=handle.api_key)
    batch = client.messages.batches.create(requests=[_request("a")])
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(5.0)
