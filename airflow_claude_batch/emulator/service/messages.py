"""``POST /v1/messages`` (non-streaming) and ``POST /v1/messages/count_tokens``.

Both check a request exactly as a batch request is checked (:mod:`.request_checks`) and answer from
the same generator (:mod:`.replies`) and token estimate (:mod:`.digests`); a synchronous answer uses
the workspace's prompt cache at the time of the call and reports ``service_tier: "standard"``.
"""

from __future__ import annotations

from typing import Any

from airflow_claude_batch.emulator.checks.errors import ApiError
from airflow_claude_batch.emulator.checks.request_checks import check_request
from airflow_claude_batch.emulator.ids import random_id
from airflow_claude_batch.emulator.store.digests import count_input_tokens, digest_request, message
from airflow_claude_batch.emulator.store.engine import Engine, unit

STREAM_REFUSED = (
    "stream: the emulator answers POST /v1/messages without streaming only; remove 'stream' or set it to "
    "false (batch requests are never streamed either)"
)


def create_message(
    engine: Engine, params: Any, workspace: str, version: str, betas: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Answer one Messages request as the API would, or raise the API's error.

    :param engine: the emulator's engine (models, prompt cache, clock, seed).
    :param params: the request body.
    :param workspace: the caller's workspace.
    :param version: the request's ``anthropic-version``.
    :param betas: the request's ``anthropic-beta`` values.
    :raises ApiError: 400 for an invalid or streaming request, 404 for an unknown model.
    """
    if isinstance(params, dict) and params.get("stream"):
        raise ApiError("invalid_request_error", STREAM_REFUSED)
    spec, problem = check_request(params, engine.catalogue, version=version, betas=betas)
    if problem is not None or spec is None:
        raise ApiError(
            problem.error_type if problem else "invalid_request_error", problem.message if problem else ""
        )
    message_id = random_id("msg_")
    digest = digest_request(message_id, params, spec)
    event = engine.cache.use(workspace, digest, engine.clock(), unit(engine.config.seed, message_id, "cache"))
    return message(message_id, digest, event, "standard")


def count_tokens(engine: Engine, params: Any, version: str) -> dict[str, Any]:
    """Return ``{"input_tokens": n}`` for a request, the same count its ``usage`` would report.

    :raises ApiError: as the API answers an invalid request.
    """
    spec, problem = check_request(params, engine.catalogue, version=version, count_tokens=True)
    if problem is not None or spec is None:
        raise ApiError(
            problem.error_type if problem else "invalid_request_error", problem.message if problem else ""
        )
    return {"input_tokens": count_input_tokens(params, spec)}
