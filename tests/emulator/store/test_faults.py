"""Armed faults and stats: each fault fires as specified, is used up, and the counters prove it."""

from __future__ import annotations

import time

import anthropic
import httpx
import orjson
import pytest

from tests.emulator.builders import api_call, assert_error, post_batch, requests

BATCHES = "/v1/messages/batches"


def _ended_batch(emulator, count: int = 5) -> str:
    batch_id = post_batch(emulator, {"requests": requests(count)}).json()["id"]
    for _ in range(200):
        if api_call(emulator, "GET", f"{BATCHES}/{batch_id}").json()["processing_status"] == "ended":
            return batch_id
    raise AssertionError(f"batch {batch_id} did not end")


def _call(emulator, endpoint: str, batch_id: str) -> httpx.Response:
    calls = {
        "create": lambda: post_batch(emulator, {"requests": requests(1)}),
        "retrieve": lambda: api_call(emulator, "GET", f"{BATCHES}/{batch_id}"),
        "list": lambda: api_call(emulator, "GET", BATCHES),
        "results": lambda: api_call(emulator, "GET", f"{BATCHES}/{batch_id}/results"),
        "cancel": lambda: api_call(emulator, "POST", f"{BATCHES}/{batch_id}/cancel"),
        "delete": lambda: api_call(emulator, "DELETE", f"{BATCHES}/{batch_id}"),
        "count_tokens": lambda: api_call(
            emulator,
            "POST",
            "/v1/messages/count_tokens",
            json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]},
        ),
    }
    return calls[endpoint]()


@pytest.mark.parametrize(
    "endpoint", ["create", "retrieve", "list", "results", "cancel", "delete", "count_tokens"]
)
@pytest.mark.parametrize(
    ("status", "error_type"), [(429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error")]
)
def test_fail_next_answers_the_error_count_times(emulator, endpoint, status, error_type):
    batch_id = _ended_batch(emulator)
    emulator.faults({"fail_next": {"endpoint": endpoint, "status": status, "count": 2, "retry_after": 3}})
    for _ in range(2):
        response = _call(emulator, endpoint, batch_id)
        assert_error(response, status, error_type)
        assert response.headers["retry-after"] == "3"
    assert _call(emulator, endpoint, batch_id).status_code == 200
    assert emulator.stats()["faults_fired"] == 2


def test_fail_next_without_retry_after_sends_no_header(emulator):
    emulator.faults({"fail_next": {"endpoint": "list", "status": 500}})
    response = _call(emulator, "list", "")
    assert_error(response, 500, "api_error")
    assert "retry-after" not in response.headers


def test_sdk_waits_out_a_429_with_retry_after(emulator):
    emulator.faults({"fail_next": {"endpoint": "list", "status": 429, "count": 1, "retry_after": 0}})
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=1)
    assert client.messages.batches.list().data == []
    assert emulator.stats()["lists"] == 2


def test_lost_create_response_still_creates_the_batch(emulator, sdk):
    emulator.faults({"lose_next_create_response": 1})
    with pytest.raises(anthropic.InternalServerError):
        sdk.messages.batches.create(requests=requests(2))
    stats = emulator.stats()
    assert stats["batches_created"] == 1
    assert stats["creates_received"] == 1
    (listed,) = sdk.messages.batches.list().data
    assert listed.request_counts.processing + listed.request_counts.succeeded == 2
    # Used up: the next create answers normally.
    assert sdk.messages.batches.create(requests=requests(1)).id != listed.id


def test_dropped_create_response_closes_the_connection(emulator, sdk):
    emulator.faults({"lose_next_create_response": 1, "mode": "drop"})
    with pytest.raises(anthropic.APIConnectionError):
        sdk.messages.batches.create(requests=requests(2))
    assert emulator.stats()["batches_created"] == 1
    assert len(sdk.messages.batches.list().data) == 1


def test_cut_results_stop_after_n_lines(emulator):
    batch_id = _ended_batch(emulator, count=20)
    emulator.faults({"cut_results_after_lines": 7})
    lines = []
    url = f"{emulator.base_url}{BATCHES}/{batch_id}/results"
    auth = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        emulator.client.stream("GET", url, headers=auth) as response,
    ):
        lines.extend(response.iter_lines())
    assert len(lines) == 7
    assert all(orjson.loads(line)["custom_id"] for line in lines)
    # Used up: the next download is whole.
    assert len(api_call(emulator, "GET", f"{BATCHES}/{batch_id}/results").content.splitlines()) == 20


def test_latency_delays_every_answer(emulator):
    emulator.faults({"latency_ms": 300})
    response = api_call(emulator, "GET", BATCHES)
    assert response.elapsed.total_seconds() >= 0.3
    emulator.faults({"latency_ms": 0})
    assert api_call(emulator, "GET", BATCHES).status_code == 200


def _outcomes(emulator, batch_id: str) -> dict[str, int]:
    counts = api_call(emulator, "GET", f"{BATCHES}/{batch_id}").json()["request_counts"]
    return {name: value for name, value in counts.items() if value}


def test_expire_next_expires_that_fraction_of_the_next_batches(emulator):
    emulator.faults({"expire_next": {"fraction": 0.3, "batches": 2}})
    first, second, third = (_ended_batch(emulator, count=10) for _ in range(3))
    assert _outcomes(emulator, first) == {"succeeded": 7, "expired": 3}
    assert _outcomes(emulator, second) == {"succeeded": 7, "expired": 3}
    assert _outcomes(emulator, third) == {"succeeded": 10}
    lines = [
        orjson.loads(line)
        for line in api_call(emulator, "GET", f"{BATCHES}/{first}/results").content.splitlines()
    ]
    assert sum(1 for line in lines if line["result"] == {"type": "expired"}) == 3


def test_error_next_errors_that_fraction_with_the_given_type(emulator):
    emulator.faults({"error_next": {"fraction": 0.5, "batches": 1, "error_type": "invalid_request_error"}})
    batch_id = _ended_batch(emulator, count=10)
    assert _outcomes(emulator, batch_id) == {"succeeded": 5, "errored": 5}
    lines = [
        orjson.loads(line)
        for line in api_call(emulator, "GET", f"{BATCHES}/{batch_id}/results").content.splitlines()
    ]
    errors = [line["result"]["error"] for line in lines if line["result"]["type"] == "errored"]
    assert {error["error"]["type"] for error in errors} == {"invalid_request_error"}
    assert all(error["type"] == "error" for error in errors)


def test_rejected_create_uses_up_no_batch_fault(emulator):
    emulator.faults({"expire_next": {"fraction": 1.0, "batches": 1}})
    assert post_batch(emulator, {"requests": []}).status_code == 400
    assert _outcomes(emulator, _ended_batch(emulator, count=4)) == {"expired": 4}


def test_processing_seconds_keeps_batches_running(emulator):
    emulator.faults({"processing_seconds": 0.5})
    batch_id = post_batch(emulator, {"requests": requests(2)}).json()["id"]
    assert api_call(emulator, "GET", f"{BATCHES}/{batch_id}").json()["processing_status"] == "in_progress"
    states = []
    for _ in range(100):
        batch = api_call(emulator, "GET", f"{BATCHES}/{batch_id}").json()
        states.append(batch["processing_status"])
        if batch["processing_status"] == "ended":
            break
        time.sleep(0.05)
    assert states[-1] == "ended"
    assert emulator.stats()["retrieves"] == len(states) + 1


def test_results_lag_answers_404_after_ended_until_the_lag_passes(emulator, sdk):
    batch_id = _ended_batch(emulator)
    emulator.faults({"results_lag_seconds": 1.0})
    try:
        batch = sdk.messages.batches.retrieve(batch_id)
        assert batch.processing_status == "ended"
        assert batch.results_url
        with pytest.raises(anthropic.NotFoundError):
            list(sdk.messages.batches.results(batch_id))
        time.sleep(1.2)
        assert len(list(sdk.messages.batches.results(batch_id))) == 5
    finally:
        emulator.faults({"results_lag_seconds": None})


@pytest.mark.parametrize(
    "spec",
    [
        {"results_lag_seconds": -1},
        {"fail_next": {"endpoint": "nowhere", "status": 500}},
        {"fail_next": {"endpoint": "list", "status": 200}},
        {"lose_next_create_response": -1},
        {"lose_next_create_response": 1, "mode": "vanish"},
        {"expire_next": {"fraction": 1.5}},
        {"error_next": {"fraction": 0.5, "error_type": "made_up_error"}},
        {"latency_ms": "slow"},
        {"fail_next": {"endpoint": "list", "status": 500}, "unknown_fault": 1},
    ],
)
def test_bad_fault_spec_is_refused_and_arms_nothing(emulator, spec):
    response = emulator.client.post(f"{emulator.base_url}/_emulator/faults", json=spec)
    assert_error(response, 400, "invalid_request_error")
    assert _call(emulator, "list", "").status_code == 200


def test_reset_clears_batches_stats_and_faults(emulator, sdk):
    sdk.messages.batches.create(requests=requests(1))
    emulator.faults({"fail_next": {"endpoint": "list", "status": 500, "count": 5}})
    emulator.reset()
    assert sdk.messages.batches.list().data == []
    assert emulator.stats()["batches_created"] == 0


def test_stats_count_every_endpoint(emulator, sdk):
    body = orjson.dumps({"requests": requests(3)})
    batch_id = post_batch(emulator, body).json()["id"]
    sdk.messages.batches.retrieve(batch_id)
    sdk.messages.batches.list()
    sdk.messages.batches.cancel(batch_id)
    list(sdk.messages.batches.results(_ended_batch(emulator)))  # one retrieve and one download
    sdk.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    stats = emulator.stats()
    assert stats["creates_received"] == 2
    assert stats["batches_created"] == 2
    assert stats["lists"] == 1
    assert stats["cancels"] == 1
    assert stats["results_downloads"] == 1
    assert stats["count_tokens"] == 1
    assert stats["retrieves"] >= 3
    assert stats["last_create_body_bytes"] > 0
    assert emulator.stats()["last_create_body_bytes"] == stats["last_create_body_bytes"]


def test_last_create_body_bytes_is_the_raw_size(emulator):
    body = orjson.dumps({"requests": requests(3)})
    post_batch(emulator, body)
    assert emulator.stats()["last_create_body_bytes"] == len(body)
