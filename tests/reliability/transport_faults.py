"""Transport faults the emulator's own fault board does not make: answers cut off, slow and late answers.

:class:`TransportFaults` wraps the emulator's ASGI app. Faults are armed per endpoint and used up as they
fire:

- ``reset``: the answer's status line and headers go out (with the full ``content-length``), then at most
  ``after_bytes`` of the body, then the connection closes. To the client this is a connection reset in
  the middle of the answer (``httpx.RemoteProtocolError``). The request itself is processed, so a reset
  create has made its batch: the answer is lost, not the work.
- ``slow``: the request waits ``seconds`` before the emulator sees it. If the client gives up first, the
  emulator finds the client gone and does nothing (a request stuck in a proxy).
- ``late``: the whole request is read first, then it waits ``seconds``, then it is processed whether or
  not the client is still there (an API that finishes work the client stopped waiting for).
- ``answer``: a gateway or proxy in front of the API answers ``status`` at once, with the API's JSON
  error body (``body="api"``) or an HTML page (``body="html"``); the request reaches the API
  ``seconds`` later all the same (a gateway's 504 whose create lands after it), or never
  (``seconds=None``: nothing was passed on).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["reset", "slow", "late", "answer"]
_ERROR_TYPES = {404: "not_found_error", 400: "invalid_request_error", 403: "permission_error"}

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/v1/messages/batches/?$"), "create"),
    ("GET", re.compile(r"^/v1/messages/batches/?$"), "list"),
    ("GET", re.compile(r"^/v1/messages/batches/[^/]+/results$"), "results"),
    ("POST", re.compile(r"^/v1/messages/batches/[^/]+/cancel$"), "cancel"),
    ("DELETE", re.compile(r"^/v1/messages/batches/[^/]+$"), "delete"),
    ("GET", re.compile(r"^/v1/messages/batches/[^/]+$"), "retrieve"),
    ("POST", re.compile(r"^/v1/messages/count_tokens$"), "count_tokens"),
)
ENDPOINTS = tuple(sorted({endpoint for _, _, endpoint in _ROUTES}))


def endpoint_of(method: str, path: str) -> str | None:
    """Return the API endpoint a request is for (``create``, ``retrieve``...), ``None`` for the test hooks."""
    for route_method, pattern, endpoint in _ROUTES:
        if method == route_method and pattern.match(path):
            return endpoint
    return None


@dataclass(frozen=True)
class TransportFault:
    """One armed fault.

    :param kind: ``reset``, ``slow`` or ``late``.
    :param after_bytes: for ``reset``, the body bytes sent before the connection closes.
    :param seconds: for ``slow`` and ``late``, the delay; for ``answer``, when the request reaches the
        API after the answer (``None``: never).
    :param status: for ``answer``, the status answered.
    :param body: for ``answer``, ``"api"`` (the API's JSON error body) or ``"html"`` (a gateway's page).
    """

    kind: FaultKind
    after_bytes: int = 0
    seconds: float | None = 0.0
    status: int = 504
    body: str = "html"


class TransportFaults:
    """ASGI middleware in front of the emulator that fires armed transport faults.

    :param app: the emulator's app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._armed: dict[str, list[TransportFault]] = {endpoint: [] for endpoint in ENDPOINTS}
        self.fired: Counter[str] = Counter()

    def arm(
        self,
        endpoint: str,
        kind: FaultKind,
        *,
        count: int = 1,
        after_bytes: int = 0,
        seconds: float | None = 0.0,
        status: int = 504,
        body: str = "html",
    ) -> None:
        """Make the next ``count`` requests to ``endpoint`` suffer ``kind``."""
        if endpoint not in self._armed:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS}")
        with self._lock:
            fault = TransportFault(kind, after_bytes, seconds, status, body)
            self._armed[endpoint].extend([fault] * count)

    def reset(self) -> None:
        """Disarm every fault and forget what fired."""
        with self._lock:
            for queue in self._armed.values():
                queue.clear()
            self.fired.clear()

    @property
    def total_fired(self) -> int:
        return sum(self.fired.values())

    def _take(self, endpoint: str | None) -> TransportFault | None:
        if endpoint is None:
            return None
        with self._lock:
            queue = self._armed[endpoint]
            if not queue:
                return None
            fault = queue.pop(0)
            self.fired[f"{endpoint}:{fault.kind}"] += 1
            return fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self._take(endpoint_of(scope["method"], scope["path"])) if scope["type"] == "http" else None
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "late":
            await self.app(
                scope, await _read_then_wait(receive, fault.seconds or 0.0), _ignore_when_gone(send)
            )
        elif fault.kind == "answer":
            replay = await _read_then_wait(receive, 0.0)
            await _send_answer(send, fault)
            if fault.seconds is not None:
                await asyncio.sleep(fault.seconds)
                await self.app(scope, replay, _discard)
        else:
            await self.app(scope, receive, _cut_after(send, fault.after_bytes))


async def _read_then_wait(receive: Receive, seconds: float) -> Receive:
    """Read the whole request body now; after ``seconds``, replay it to the app as if just received."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await asyncio.sleep(seconds)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}
        return await receive()

    return replay


async def _send_answer(send: Send, fault: TransportFault) -> None:
    """Answer as a gateway would: the API's error body, or an HTML page of the gateway's own."""
    if fault.body == "api":
        error_type = _ERROR_TYPES.get(fault.status, "api_error")
        payload = json.dumps(
            {"type": "error", "error": {"type": error_type, "message": "Not found"}}
        ).encode()
        content_type = b"application/json"
    else:
        payload = f"<html><body><h1>{fault.status} Gateway Error</h1></body></html>".encode()
        content_type = b"text/html"
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _discard(message: Message) -> None:
    """The answer went out already: what the API answers later reaches nobody."""


def _ignore_when_gone(send: Send) -> Send:
    async def guarded(message: Message) -> None:
        with suppress(OSError, RuntimeError):  # the client left: the work is done all the same
            await send(message)

    return guarded


def _cut_after(send: Send, after_bytes: int) -> Send:
    """Pass the response start, then at most ``after_bytes`` of body, then nothing (not even its end).

    An app that returns without ending its response makes the server close the connection.
    """
    budget = after_bytes

    async def cut(message: Message) -> None:
        nonlocal budget
        if message["type"] == "http.response.start":
            await send(message)
            return
        if message["type"] != "http.response.body" or budget <= 0:
            return
        body: bytes = message.get("body", b"")[:budget]
        budget -= len(body)
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    return cut


def describe(fired: Counter[str]) -> dict[str, Any]:
    """The fired faults as a plain dict (for the suite's figures)."""
    return dict(sorted(fired.items()))
