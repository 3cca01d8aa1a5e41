"""Create-time validation, auth and error answers, checked on the wire with plain httpx."""

from __future__ import annotations

import orjson
import pytest

from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION, MAX_BATCH_BYTES, MAX_REQUESTS_PER_BATCH
from tests.emulator.builders import (
    api_call,
    assert_error,
    headers,
    post_batch,
    request,
    requests,
    result_lines,
)


@pytest.mark.parametrize(
    "custom_id",
    ["", "has space", "a" * 65, "naïve", "semi;colon", "slash/id", 123, None],
    ids=["empty", "space", "65-chars", "non-ascii", "semicolon", "slash", "number", "missing"],
)
def test_bad_custom_id_is_rejected(emulator, custom_id):
    bad = request("x")
    bad["custom_id"] = custom_id
    response = post_batch(emulator, {"requests": [request("ok"), bad]})
    error = assert_error(response, 400, "invalid_request_error")
    assert error["message"].startswith("requests.1.custom_id")
    assert emulator.stats()["batches_created"] == 0


def test_custom_id_of_64_allowed_characters_is_accepted(emulator):
    custom_id = ("Az09_-" * 11)[:64]
    response = post_batch(emulator, {"requests": [request(custom_id)]})
    assert response.status_code == 200, response.text


def test_duplicate_custom_id_is_rejected(emulator):
    body = {"requests": [request("same"), request("other"), request("same")]}
    error = assert_error(post_batch(emulator, body), 400, "invalid_request_error")
    assert "requests.2.custom_id" in error["message"]
    assert "unique" in error["message"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"stream": True}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": []}, "messages"),
    ],
)
def test_params_rejected_at_create(emulator, params, expected):
    body = {"requests": [request("a", **params)]}
    error = assert_error(post_batch(emulator, body), 400, "invalid_request_error")
    assert expected in error["message"]


def test_missing_model_is_rejected(emulator):
    bad = request("a")
    del bad["params"]["model"]
    error = assert_error(post_batch(emulator, {"requests": [bad]}), 400, "invalid_request_error")
    assert "model" in error["message"]


@pytest.mark.parametrize(
    "body",
    [b'{"requests": []}', b"{}", b'{"requests": {}}', b"not json", b'[{"custom_id": "a"}]'],
    ids=["empty-list", "no-requests", "not-a-list", "not-json", "not-an-object"],
)
def test_malformed_bodies_are_rejected(emulator, body):
    assert_error(post_batch(emulator, body), 400, "invalid_request_error")


def test_more_than_100000_requests_is_too_large(emulator):
    template = b'{"custom_id":"r%d","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[]}}'
    items = b",".join(template % index for index in range(MAX_REQUESTS_PER_BATCH + 1))
    response = post_batch(emulator, b'{"requests":[' + items + b"]}")
    error = assert_error(response, 413, "request_too_large")
    assert str(MAX_REQUESTS_PER_BATCH) in error["message"]
    assert emulator.stats()["batches_created"] == 0


def test_exactly_100000_requests_are_accepted_and_answered(make_emulator):
    server = make_emulator(speed=1e9)
    template = (
        b'{"custom_id":"r%d","params":{"model":"claude-haiku-4-5","max_tokens":8,'
        b'"messages":[{"role":"user","content":"hi"}]}}'
    )
    items = b",".join(template % index for index in range(MAX_REQUESTS_PER_BATCH))
    response = post_batch(server, b'{"requests":[' + items + b"]}")
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    lines = result_lines(server, batch_id)
    assert len(lines) == MAX_REQUESTS_PER_BATCH
    assert len({line["custom_id"] for line in lines}) == MAX_REQUESTS_PER_BATCH


def _body_of_size(size: int) -> bytes:
    """Return a valid one-request create body of exactly ``size`` bytes."""
    empty = orjson.dumps({"requests": [request("a", text="")]})
    body = orjson.dumps({"requests": [request("a", text="x" * (size - len(empty)))]})
    assert len(body) == size
    return body


def test_byte_limit_counts_the_raw_body(make_emulator):
    server = make_emulator(max_batch_bytes=10_000)
    assert post_batch(server, _body_of_size(10_000)).status_code == 200
    response = post_batch(server, _body_of_size(10_001))
    error = assert_error(response, 413, "request_too_large")
    assert "10001" in error["message"]
    assert server.stats()["last_create_body_bytes"] == 10_001
    assert server.stats()["batches_created"] == 1


def test_body_over_the_real_byte_limit_is_too_large(emulator):
    size = MAX_BATCH_BYTES + 1
    block = b" " * (1 << 20)

    def body():
        # Leading whitespace is valid JSON; the server must refuse on size before parsing.
        sent = 0
        while sent < size - 2:
            chunk = block[: min(len(block), size - 2 - sent)]
            sent += len(chunk)
            yield chunk
        yield b"{}"

    response = api_call(
        emulator,
        "POST",
        "/v1/messages/batches",
        content=body(),
        headers={"content-length": str(size)},
        timeout=120,
    )
    assert_error(response, 413, "request_too_large")
    assert emulator.stats()["last_create_body_bytes"] == size


def test_unknown_model_is_accepted_then_errored_as_not_found(emulator):
    body = {"requests": [request("good"), request("bad", model="gpt-4o")]}
    response = post_batch(emulator, body)
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    for _ in range(100):
        batch = api_call(emulator, "GET", f"/v1/messages/batches/{batch_id}").json()
        if batch["processing_status"] == "ended":
            break
    assert batch["request_counts"]["errored"] == 1
    assert batch["request_counts"]["succeeded"] == 1
    by_id = {line["custom_id"]: line["result"] for line in result_lines(emulator, batch_id)}
    assert by_id["bad"]["type"] == "errored"
    assert by_id["bad"]["error"]["type"] == "error"
    assert by_id["bad"]["error"]["error"] == {"type": "not_found_error", "message": "model: gpt-4o"}
    assert by_id["bad"]["error"]["request_id"].startswith("req_")


@pytest.mark.parametrize(
    "auth",
    [{}, {"x-api-key": ""}, {"x-api-key": "wrong-key"}, {"authorization": "Bearer wrong-key"}],
    ids=["missing", "empty", "wrong", "wrong-bearer"],
)
def test_requests_without_the_key_are_unauthenticated(emulator, auth):
    response = emulator.client.get(
        f"{emulator.base_url}/v1/messages/batches", headers={"anthropic-version": ANTHROPIC_VERSION, **auth}
    )
    assert_error(response, 401, "authentication_error")
    assert emulator.stats()["lists"] == 0
    assert emulator.stats()["auth_failures"] == 1


def test_key_is_accepted_as_x_api_key_or_bearer(emulator):
    for auth in ({"x-api-key": emulator.api_key}, {"authorization": f"Bearer {emulator.api_key}"}):
        response = emulator.client.get(
            f"{emulator.base_url}/v1/messages/batches",
            headers={"anthropic-version": ANTHROPIC_VERSION, **auth},
        )
        assert response.status_code == 200, response.text
        assert response.headers["request-id"].startswith("req_")


def test_any_key_is_accepted_when_none_is_configured(make_emulator):
    server = make_emulator(api_key=None)
    response = server.client.get(f"{server.base_url}/v1/messages/batches", headers=headers("anything-at-all"))
    assert response.status_code == 200


def test_missing_version_header_is_rejected(emulator):
    response = emulator.client.get(
        f"{emulator.base_url}/v1/messages/batches", headers={"x-api-key": emulator.api_key}
    )
    error = assert_error(response, 400, "invalid_request_error")
    assert "anthropic-version" in error["message"]


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/cancel"), ("DELETE", ""), ("GET", "/results")]
)
def test_unknown_batch_id_is_not_found(emulator, method, suffix):
    response = api_call(emulator, method, f"/v1/messages/batches/msgbatch_01nope{suffix}")
    assert_error(response, 404, "not_found_error")


def test_unknown_path_is_not_found(emulator):
    response = api_call(emulator, "GET", "/v1/nothing-here")
    assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_list_limit_out_of_range_is_rejected(emulator, limit):
    response = api_call(emulator, "GET", "/v1/messages/batches", params={"limit": limit})
    assert_error(response, 400, "invalid_request_error")


def test_list_limit_of_1000_is_accepted(emulator):
    response = api_call(emulator, "GET", "/v1/messages/batches", params={"limit": 1000})
    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_results_of_a_running_batch_are_refused(emulator):
    emulator.faults({"processing_seconds": 60})
    batch_id = post_batch(emulator, {"requests": requests(2)}).json()["id"]
    response = api_call(emulator, "GET", f"/v1/messages/batches/{batch_id}/results")
    error = assert_error(response, 400, "invalid_request_error")
    assert "in_progress" in error["message"]
