"""Small builders of batch requests and raw API calls for the emulator's tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION


def request(custom_id: str, text: str = "hello there", **params: Any) -> dict[str, Any]:
    """Return one batch request; ``params`` override the defaults (model, max_tokens, messages)."""
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
        **params,
    }
    return {"custom_id": custom_id, "params": body}


def requests(count: int, prefix: str = "r", **params: Any) -> list[dict[str, Any]]:
    """Return ``count`` requests with ids ``{prefix}0 ... {prefix}{count - 1}``."""
    return [request(f"{prefix}{index}", text=f"message number {index}", **params) for index in range(count)]


def headers(api_key: str) -> dict[str, str]:
    """Return the headers the API expects from a raw client."""
    return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}


def post_batch(handle: Any, body: Any, version: str = ANTHROPIC_VERSION) -> httpx.Response:
    """POST a create body (a dict, or raw bytes as they are) to the emulator of ``handle``."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return handle.client.post(
        f"{handle.base_url}/v1/messages/batches",
        content=content,
        headers={**headers(handle.api_key), "anthropic-version": version},
        timeout=120,
    )


def api_call(handle: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Call ``path`` of the emulator of ``handle`` with its key and the version header."""
    kwargs["headers"] = {**headers(handle.api_key), **kwargs.get("headers", {})}
    return handle.client.request(method, f"{handle.base_url}{path}", **kwargs)


def result_lines(handle: Any, batch_id: str) -> list[dict[str, Any]]:
    """Download a batch's results with plain httpx and return the parsed lines."""
    response = api_call(handle, "GET", f"/v1/messages/batches/{batch_id}/results")
    response.raise_for_status()
    return [orjson.loads(line) for line in response.content.splitlines()]


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """Check an error answer's status, envelope and request id; return its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["request_id"].startswith("req_")
    assert response.headers["request-id"] == body["request_id"]
    return body["error"]


def wait_ended(handle: Any, batch_id: str) -> dict[str, Any]:
    """Poll a batch (plain httpx) until it has ended and return it; fail after 200 polls."""
    for _ in range(200):
        batch = api_call(handle, "GET", f"/v1/messages/batches/{batch_id}").json()
        if batch["processing_status"] == "ended":
            return batch
        time.sleep(0.01)
    raise AssertionError(f"batch {batch_id} did not end")
