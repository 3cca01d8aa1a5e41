"""The HTTP face of the emulator: the Message Batches endpoints plus test hooks under ``/_emulator/``.

Every API call goes through the same gate as on the real API: the key check (401; the key comes in
``x-api-key`` or, as the SDK sends it, ``Authorization: Bearer``), the ``anthropic-version`` and
``anthropic-beta`` headers (400), the per-minute limit of the batch endpoints (429, when set), then any
armed fault. Every answer carries a ``request-id`` header, and errors carry the same id in their body.
Each key is a workspace of its own: it sees only its batches and its prompt cache.

The Messages endpoints (``POST /v1/messages``, ``count_tokens``) are in :mod:`.messages`, the model
list in :mod:`.models_api`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_claude_batch.emulator.checks.errors import ApiError, error_body, too_large
from airflow_claude_batch.emulator.checks.surface import check_headers, request_betas
from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.emulator.ids import random_id
from airflow_claude_batch.emulator.service.messages import count_tokens, create_message
from airflow_claude_batch.emulator.service.models_api import get_model_info, list_models
from airflow_claude_batch.emulator.store.engine import Clock, Engine, workspace_of
from airflow_claude_batch.emulator.store.faults import FaultBoard
from airflow_claude_batch.emulator.store.quotas import RequestsPerMinute
from airflow_claude_batch.emulator.store.stats import Stats

BATCHES = "/v1/messages/batches"
RESULTS_CHUNK_BYTES = 1 << 20
MAX_LIST_LIMIT = 1000
_FAULT_MESSAGES = {
    "rate_limit_error": "Number of requests has exceeded your rate limit",
    "overloaded_error": "Overloaded",
}


class _DeliberateDropFilter(logging.Filter):
    """Hide the server's complaint about responses the emulator leaves unfinished on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def _quiet_deliberate_drops() -> None:
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DeliberateDropFilter) for existing in server_log.filters):
        server_log.addFilter(_DeliberateDropFilter())


class _RequestIdMiddleware:
    """Give each request an id: in ``request.state.request_id`` and the ``request-id`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = random_id("req_")
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class _BytesResponse(Response):
    """Sends a large bytes object in chunks, so the server's write buffer stays small.

    With ``declared_length`` above ``len(content)`` it stands for a lost answer or a download cut in
    the middle: the client reads the headers and part of the body, then the connection ends.

    :param content: the bytes to send.
    :param media_type: the ``content-type``.
    :param declared_length: the ``content-length`` to announce; defaults to ``len(content)``.
    """

    def __init__(self, content: bytes, media_type: str, declared_length: int | None = None) -> None:
        super().__init__(status_code=200, media_type=media_type)
        self.content = content
        self.declared_length = len(content) if declared_length is None else declared_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-length", str(self.declared_length).encode()),
            (b"content-type", str(self.media_type).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, len(self.content), RESULTS_CHUNK_BYTES):
            chunk = self.content[start : start + RESULTS_CHUNK_BYTES]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.declared_length == len(self.content):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        # Otherwise returning without the final body message makes the server close the connection.


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _api_key(request: Request) -> str:
    """Return the caller's key: ``x-api-key``, or a bearer token (what the SDK sends for ``api_key``)."""
    api_key = request.headers.get("x-api-key", "")
    if api_key:
        return api_key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _line_offset(content: bytes, lines: int) -> int:
    """Return the byte offset just after the first ``lines`` lines of ``content``."""
    offset = 0
    for _ in range(lines):
        newline = content.find(b"\n", offset)
        if newline < 0:
            return len(content)
        offset = newline + 1
    return offset


@dataclass(frozen=True)
class Caller:
    """Who makes a call: the key, its workspace, and the ``anthropic-version`` it asked for."""

    api_key: str
    workspace: str
    version: str
    betas: tuple[str, ...] = ()


class _Emulator:
    """The state behind one app: engine, faults and stats, and the request gate."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.engine = Engine(config, clock)
        self.faults = FaultBoard()
        self.stats = Stats()
        self.batch_rpm = RequestsPerMinute(config.rpm_limit)

    def reset(self) -> None:
        self.engine.reset()
        self.faults.reset()
        self.stats.reset()
        self.batch_rpm.reset()

    async def gate(self, request: Request, endpoint: str, counter: str, *, batches: bool = True) -> Caller:
        """Delay, authenticate, check headers and limits, count and fire armed failures, as the API's
        front door; return who calls and under which version.

        :param batches: the call is to a batch endpoint (counted by the per-minute limit).
        """
        latency = self.faults.latency_seconds
        if latency:
            await asyncio.sleep(latency)
        api_key = _api_key(request)
        if not api_key:
            self.stats.add("auth_failures")
            raise ApiError("authentication_error", "x-api-key header is required")
        if self.config.api_key is not None and api_key != self.config.api_key:
            self.stats.add("auth_failures")
            raise ApiError("authentication_error", "invalid x-api-key")
        version = check_headers(request.headers)
        workspace = workspace_of(api_key)
        if batches:
            try:
                self.batch_rpm.admit(workspace, self.engine.clock())
            except ApiError:
                self.stats.add("rpm_limited")
                raise
        self.stats.add(counter)
        failure = self.faults.take_failure(endpoint)
        if failure is not None:
            self.stats.add("faults_fired")
            headers = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
            message = failure.message or _FAULT_MESSAGES.get(failure.error_type, "Internal server error")
            raise ApiError(
                failure.error_type,
                message,
                status=failure.status,
                headers=headers,
                error_code=failure.error_code,
            )
        return Caller(api_key, workspace, version, request_betas(request.headers))

    async def read_body(self, request: Request) -> bytearray:
        """Read the create body into one buffer; past the byte limit, drain it and answer 413."""
        limit = self.config.max_batch_bytes
        declared = request.headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else -1
        buffer = bytearray(size) if 0 <= size <= limit else bytearray()
        filled = 0
        async for chunk in request.stream():
            end = filled + len(chunk)
            if end <= limit:
                if end <= len(buffer):
                    buffer[filled:end] = chunk
                else:
                    buffer[filled:] = chunk
            filled = end
        self.stats.record_create_body(filled)
        if filled > limit:
            raise too_large(filled, limit)
        del buffer[filled:]
        return buffer


def create_app(config: EmulatorConfig | None = None, *, clock: Clock = time.time) -> FastAPI:
    """Build the emulator's ASGI app.

    :param config: the emulator's settings; defaults to :class:`EmulatorConfig`'s.
    :param clock: returns the current time in POSIX seconds; tests may pass a manual clock.
    """
    emulator = _Emulator(config or EmulatorConfig(), clock)
    _quiet_deliberate_drops()
    app = FastAPI(title="Message Batches API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    app.add_middleware(_RequestIdMiddleware)
    _add_error_handlers(app)
    _add_batch_routes(app, emulator)
    _add_message_routes(app, emulator)
    _add_test_hooks(app, emulator)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        body = error_body(exc.error_type, exc.message, request.state.request_id, exc.error_code)
        return _json(body, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            body = error_body("not_found_error", f"Not found: {request.url.path}", request.state.request_id)
        else:
            body = error_body("invalid_request_error", str(exc.detail), request.state.request_id)
        return _json(body, exc.status_code)


def _base_url(request: Request) -> str:
    return str(request.base_url)


def _add_batch_routes(app: FastAPI, emulator: _Emulator) -> None:
    engine = emulator.engine

    @app.post(BATCHES)
    async def create_batch(request: Request) -> Response:
        caller = await emulator.gate(request, "create", "creates_received")
        body = await emulator.read_body(request)
        try:
            batch = await run_in_threadpool(
                engine.create,
                body,
                caller.api_key,
                _base_url(request),
                emulator.faults.take_batch_faults,
                caller.version,
                caller.betas,
            )
        except ApiError as refused:
            if refused.error_type == "rate_limit_error":
                emulator.stats.add("queue_limited")
            raise
        emulator.stats.add("batches_created")
        lost = emulator.faults.take_lost_create()
        if lost == "error":
            raise ApiError("api_error", "Internal server error")
        if lost == "drop":
            return _BytesResponse(b"", "application/json", declared_length=len(orjson.dumps(batch)))
        return _json(batch)

    @app.get(BATCHES)
    async def list_batches(request: Request) -> Response:
        caller = await emulator.gate(request, "list", "lists")
        limit, after_id, before_id = _page_query(request)
        page = await run_in_threadpool(
            engine.list_batches,
            _base_url(request),
            caller.workspace,
            limit=limit,
            after_id=after_id,
            before_id=before_id,
        )
        return _json(page)

    @app.get(BATCHES + "/{batch_id}")
    async def retrieve_batch(batch_id: str, request: Request) -> Response:
        caller = await emulator.gate(request, "retrieve", "retrieves")
        return _json(await run_in_threadpool(engine.retrieve, batch_id, _base_url(request), caller.workspace))

    @app.post(BATCHES + "/{batch_id}/cancel")
    async def cancel_batch(batch_id: str, request: Request) -> Response:
        caller = await emulator.gate(request, "cancel", "cancels")
        return _json(await run_in_threadpool(engine.cancel, batch_id, _base_url(request), caller.workspace))

    @app.delete(BATCHES + "/{batch_id}")
    async def delete_batch(batch_id: str, request: Request) -> Response:
        caller = await emulator.gate(request, "delete", "deletes")
        return _json(await run_in_threadpool(engine.delete, batch_id, caller.workspace))

    @app.get(BATCHES + "/{batch_id}/results")
    async def batch_results(batch_id: str, request: Request) -> Response:
        caller = await emulator.gate(request, "results", "results_downloads")
        content = await run_in_threadpool(
            engine.results, batch_id, caller.workspace, emulator.faults.results_lag_seconds
        )
        cut_after = emulator.faults.take_results_cut()
        if cut_after is not None:
            partial = content[: _line_offset(content, cut_after)]
            return _BytesResponse(partial, "application/binary", declared_length=len(content))
        return _BytesResponse(content, "application/binary")


def _page_query(request: Request) -> tuple[int, str | None, str | None]:
    query = request.query_params
    limit_text = query.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
        raise ApiError(
            "invalid_request_error", f"limit: must be a whole number from 1 to 1000, got {limit_text!r}"
        )
    if query.get("after_id") and query.get("before_id"):
        raise ApiError("invalid_request_error", "after_id and before_id cannot be used together")
    return int(limit_text), query.get("after_id") or None, query.get("before_id") or None


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError("invalid_request_error", f"The request body is not valid JSON: {exc}") from exc


def _add_message_routes(app: FastAPI, emulator: _Emulator) -> None:
    engine = emulator.engine

    @app.post("/v1/messages")
    async def messages_create(request: Request) -> Response:
        caller = await emulator.gate(request, "messages", "messages", batches=False)
        params = await _json_body(request)
        return _json(
            await run_in_threadpool(
                create_message, engine, params, caller.workspace, caller.version, caller.betas
            )
        )

    @app.post("/v1/messages/count_tokens")
    async def messages_count_tokens(request: Request) -> Response:
        caller = await emulator.gate(request, "count_tokens", "count_tokens", batches=False)
        return _json(count_tokens(engine, await _json_body(request), caller.version))

    @app.get("/v1/models")
    async def models_list(request: Request) -> Response:
        await emulator.gate(request, "models", "models", batches=False)
        limit, after_id, before_id = _page_query(request)
        return _json(list_models(engine.catalogue, limit=limit, after_id=after_id, before_id=before_id))

    @app.get("/v1/models/{model_id}")
    async def models_get(model_id: str, request: Request) -> Response:
        await emulator.gate(request, "models", "models", batches=False)
        return _json(get_model_info(engine.catalogue, model_id))


def _add_test_hooks(app: FastAPI, emulator: _Emulator) -> None:
    @app.get("/_emulator/stats")
    async def stats() -> Response:
        return _json(emulator.stats.snapshot())

    @app.post("/_emulator/faults")
    async def arm_faults(request: Request) -> Response:
        try:
            emulator.faults.arm(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise ApiError("invalid_request_error", f"bad fault spec: {exc}") from exc
        return _json({"armed": True})

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        emulator.reset()
        return _json({"reset": True})
