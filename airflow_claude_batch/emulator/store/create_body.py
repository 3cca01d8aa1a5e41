"""The create body of a batch: the checks the API makes at create time, then one digest per request.

Whatever breaks the body (not JSON, unknown top-level fields, a bad ``custom_id``, a duplicate id,
``stream``, a missing ``model``/``max_tokens``/``messages``) refuses the whole create with 400, as the
API does. Everything else is checked per request (:mod:`.request_checks`); a request that fails ends
``errored`` when the batch is processed, as on the API.
"""

from __future__ import annotations

from typing import Any

import orjson

from airflow_claude_batch.core.api.model_catalogue import ModelCatalogue
from airflow_claude_batch.core.api.validation import custom_id_problem, params_problem
from airflow_claude_batch.emulator.checks.errors import ApiError
from airflow_claude_batch.emulator.checks.request_checks import Problem, check_request
from airflow_claude_batch.emulator.store.digests import RequestDigest, digest_request, refused

_UNKNOWN = Problem("api_error", "Internal server error")


def digest_create_body(
    body: bytes | bytearray,
    version: str,
    catalogue: ModelCatalogue,
    max_requests: int,
    betas: tuple[str, ...] = (),
) -> list[RequestDigest]:
    """Check a create body and return one digest per request, in order.

    :param body: the raw body; a ``bytearray`` is emptied once parsed, to free its memory.
    :param version: the create's ``anthropic-version``; each request is checked under it.
    :param catalogue: the models the emulator knows.
    :param max_requests: most requests in one batch.
    :param betas: the create's ``anthropic-beta`` values.
    :raises ApiError: 400 for an invalid body, 413 for too many requests.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_request_error", f"The request body is not valid JSON: {exc}") from exc
    finally:
        if isinstance(body, bytearray):
            # Free up to 256 MB before the parsed requests are digested: the peak is parse + digest.
            body.clear()
    if not isinstance(payload, dict) or "requests" not in payload:
        raise ApiError("invalid_request_error", "requests: Field required")
    for key in payload:
        if key != "requests":
            raise ApiError("invalid_request_error", f"{key}: Extra inputs are not permitted")
    requests = payload["requests"]
    if not isinstance(requests, list):
        raise ApiError("invalid_request_error", "requests: Input should be a valid list")
    if not requests:
        raise ApiError("invalid_request_error", "requests: List should have at least 1 item, not 0")
    if len(requests) > max_requests:
        raise ApiError(
            "request_too_large",
            f"requests: a batch holds at most {max_requests} requests, got "
            f"{len(requests)}; split the requests into more batches",
        )
    seen: set[str] = set()
    digests = []
    for index, item in enumerate(requests):
        digests.append(_digest_item(index, item, seen, version, catalogue, betas))
    return digests


def _digest_item(
    index: int,
    item: Any,
    seen: set[str],
    version: str,
    catalogue: ModelCatalogue,
    betas: tuple[str, ...] = (),
) -> RequestDigest:
    if not isinstance(item, dict):
        raise ApiError("invalid_request_error", f"requests.{index}: Input should be a valid object")
    for key in item:
        if key not in ("custom_id", "params"):
            raise ApiError("invalid_request_error", f"requests.{index}.{key}: Extra inputs are not permitted")
    custom_id = item.get("custom_id")
    problem = custom_id_problem(custom_id)
    if problem:
        raise ApiError("invalid_request_error", f"requests.{index}.custom_id: {problem}")
    if custom_id in seen:
        raise ApiError(
            "invalid_request_error",
            f"requests.{index}.custom_id: {custom_id!r} is used by another request in this batch; "
            "custom_id must be unique within a batch",
        )
    seen.add(custom_id)
    params = item.get("params")
    problem = params_problem(params)
    if problem:
        raise ApiError("invalid_request_error", f"requests.{index}: {problem}")
    # The rest is checked per request, as the API does while processing: a problem errors the request.
    spec, problem = check_request(params, catalogue, version=version, betas=betas)
    if problem is not None or spec is None:
        return refused(custom_id, params.get("model"), problem or _UNKNOWN)
    return digest_request(custom_id, params, spec)
