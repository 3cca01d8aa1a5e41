"""The API's front door: version and beta headers, workspaces per key, queue and per-minute limits."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.emulator import EmulatorConfig, EmulatorServer
from tests.emulator.builders import api_call, assert_error, post_batch, requests


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
def test_known_versions_are_accepted(emulator, version):
    response = api_call(emulator, "GET", "/v1/messages/batches", headers={"anthropic-version": version})
    assert response.status_code == 200, response.text


def test_an_unknown_version_is_refused(emulator):
    response = api_call(emulator, "GET", "/v1/messages/batches", headers={"anthropic-version": "2099-01-01"})
    assert "anthropic-version" in assert_error(response, 400, "invalid_request_error")["message"]


def test_betas_are_checked_against_the_known_list(emulator):
    known = {"anthropic-beta": "message-batches-2024-09-24, extended-cache-ttl-2025-04-11"}
    assert api_call(emulator, "GET", "/v1/messages/batches", headers=known).status_code == 200
    unknown = {"anthropic-beta": "message-batches-2024-09-24,time-travel-2030-01-01"}
    error = assert_error(
        api_call(emulator, "GET", "/v1/messages/batches", headers=unknown), 400, "invalid_request_error"
    )
    assert "time-travel-2030-01-01" in error["message"]
    assert "message-batches" not in error["message"]


def test_each_key_sees_only_its_own_batches(clock):
    with EmulatorServer(EmulatorConfig(api_key=None, rpm_limit=None), clock=clock) as server:
        first, second = (
            anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
            for key in ("key-a", "key-b")
        )
        batch = first.messages.batches.create(requests=requests(1))
        assert [listed.id for listed in first.messages.batches.list()] == [batch.id]
        assert list(second.messages.batches.list()) == []
        for call in (
            second.messages.batches.retrieve,
            second.messages.batches.cancel,
            second.messages.batches.delete,
        ):
            with pytest.raises(anthropic.NotFoundError):
                call(batch.id)
        with pytest.raises(anthropic.NotFoundError):
            list(second.messages.batches.results(batch.id))


def test_the_queue_limit_refuses_a_create_that_would_exceed_it(clock):
    config = EmulatorConfig(api_key="k", speed=1.0, queue_limit=5, rpm_limit=None)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        client.messages.batches.create(requests=requests(3))
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.batches.create(requests=requests(3))
        assert raised.value.response.headers["retry-after"] == "30"
        client.messages.batches.create(requests=requests(2))  # exactly at the limit
        clock.advance(10.0)  # the batches end and leave the queue
        client.messages.batches.create(requests=requests(5))
        stats = server.app.state.emulator.stats.snapshot()
        assert (stats["queue_limited"], stats["creates_received"], stats["batches_created"]) == (1, 4, 3)
        assert stats["rpm_limited"] == 0


def test_a_queue_refusal_asks_for_the_configured_wait_in_whole_seconds(clock):
    config = EmulatorConfig(api_key="k", speed=1.0, queue_limit=2, queue_retry_after=1.5, rpm_limit=None)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.batches.create(requests=requests(3))
        assert raised.value.response.headers["retry-after"] == "2"
        assert raised.value.type == "rate_limit_error"
        assert "3 new is over 2" in raised.value.message


def test_the_rpm_limit_counts_every_batch_endpoint(clock):
    config = EmulatorConfig(api_key="k", rpm_limit=3, queue_limit=None)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        batch = client.messages.batches.create(requests=requests(1))
        client.messages.batches.retrieve(batch.id)
        clock.advance(20.0)
        list(client.messages.batches.list())
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.batches.retrieve(batch.id)
        assert raised.value.response.headers["retry-after"] == "40"
        # The Messages endpoints have limits of their own, not this one.
        client.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}])
        clock.advance(40.0)
        client.messages.batches.retrieve(batch.id)
        stats = server.app.state.emulator.stats.snapshot()
        assert (stats["rpm_limited"], stats["retrieves"], stats["queue_limited"]) == (1, 2, 0)


def test_limits_are_off_by_default(emulator):
    for _ in range(5):
        assert post_batch(emulator, {"requests": requests(50)}).status_code == 200


def test_by_default_the_emulator_enforces_the_apis_tier_1_limits(clock):
    """The rate-limits page, Message Batches, tier 1: 50 requests per minute to the batch endpoints and
    100,000 batch requests in the queue. A client gets what a new organization gets."""
    config = EmulatorConfig(api_key="k")
    assert (config.rpm_limit, config.queue_limit) == (50, 100_000)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        for _ in range(50):
            client.messages.batches.list()
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.batches.list()
        assert int(raised.value.response.headers["retry-after"]) >= 1
        clock.advance(61)
        client.messages.batches.list()  # the minute has passed
