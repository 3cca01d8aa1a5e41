"""The Claude Message Batches connection and hook.

The connection (type ``claude_batch``):

- **API key** (password): the key; Airflow masks it in logs, and the hook masks it again.
- **Base URL** (host): empty for ``https://api.anthropic.com``, or a gateway / emulator URL. It is
  accepted as users paste it, with or without a scheme (``https`` is assumed, ``http`` for
  ``localhost`` and loopback addresses), with or without a trailing ``/`` or ``/v1``; a port set in
  the connection's port field is added when the host has none.
- **Extras**: ``anthropic_version`` (default ``2023-06-01``), ``anthropic_beta`` (comma-separated
  flags sent as the ``anthropic-beta`` header), ``timeout`` (seconds per request, default 600) and
  ``max_retries`` (retries of reads on 429 / 5xx / 529 / connection errors, default 5).

Every client comes from one builder and one :class:`ClaudeSettings`: the SDK client (:meth:`get_conn`),
the async SDK client (:meth:`get_async_conn`) and the plain ``httpx`` client that streams the shard
files up and the results down, whose headers are copied from the SDK client so that they cannot drift.

The create call is never retried automatically: a create whose answer is lost may still have made a
batch, and the API has no idempotency key. The caller looks the batch up instead
(:mod:`airflow_claude_batch.batch.submission`). Reads are retried with backoff on 429 (after its
``retry-after``), 5xx, 529 and connection errors: JSON reads by the SDK, the results download here.
The first call of a hook fails at once, with one ``ConnectionConfigError``, when the Base URL refuses
connections or its name does not resolve: a wrong host is not hidden behind minutes of retries.

Results are always downloaded through the connection's Base URL, and the key is sent to no other
origin: a ``results_url`` on another host (a gateway passing the API's answer through) is fetched by
its path from the Base URL, and a redirect to another origin is followed without credentials.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import ipaddress
import logging
import random
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anthropic
import httpx
import orjson
from airflow.sdk import BaseHook
from anthropic.resources.messages import Messages
from anthropic.types.messages import MessageBatch

from airflow_claude_batch import CONNECTION_TYPE, DEFAULT_CONN_ID, get_provider_info
from airflow_claude_batch.batch.create_body import iter_batch_body, sent_body_size
from airflow_claude_batch.batch.limits import ANTHROPIC_VERSION
from airflow_claude_batch.batch.polling import parse_retry_after
from airflow_claude_batch.batch.results_reader import DEFAULT_CHUNK_SIZE, iter_records
from airflow_claude_batch.batch.storage import StoragePath
from airflow_claude_batch.compat import aget_connection, connection_form_widgets
from airflow_claude_batch.exceptions import (
    AfterSubmitError,
    BatchNotFoundError,
    ConnectionConfigError,
    InputError,
    ResultsStreamInterrupted,
    ResultsUnavailableError,
)

T = TypeVar("T")

FIRST_PARTY_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_RETRIES = 5
CONNECT_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5
_RESULTS_GET: dict[str, Any] = {"stream": True, "headers": {"Accept": "application/binary"}}
BATCHES_PATH = "/v1/messages/batches"
CREATE = "create a batch"
# Backoff of the results download's own retries (the SDK's retry machinery covers the JSON reads).
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_AFTER_CAP = 60.0
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_SDK_CLIENT_LOGGER = "anthropic._base_client"
_REQUEST_BODY_OPTIONS = frozenset({"json_data", "content", "files", "extra_json"})
_LOOPBACK_NAMES = frozenset({"localhost"})
_UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
_STATUS_ERRORS: dict[int, type[anthropic.APIStatusError]] = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    403: anthropic.PermissionDeniedError,
    404: anthropic.NotFoundError,
    408: anthropic.RequestTimeoutError,
    409: anthropic.ConflictError,
    413: anthropic.ContentTooLargeError,
    422: anthropic.UnprocessableEntityError,
    429: anthropic.RateLimitError,
    529: anthropic.OverloadedError,
}


@dataclass(frozen=True)
class ClaudeSettings:
    """Everything the clients are built from, read once from the connection.

    :param conn_id: the Airflow connection id, for messages.
    :param base_url: the API root, normalised (scheme, host, optional path prefix; no ``/v1``).
    :param api_key: the key (never shown in ``repr``).
    :param anthropic_version: the ``anthropic-version`` header.
    :param betas: flags for the ``anthropic-beta`` header.
    :param timeout: seconds per request.
    :param max_retries: retries of reads.
    """

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    anthropic_version: str = ANTHROPIC_VERSION
    betas: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES

    @property
    def extra_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self.betas:
            headers["anthropic-beta"] = ",".join(self.betas)
        return headers

    @property
    def client_timeout(self) -> anthropic.Timeout:
        return anthropic.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_SECONDS))

    @property
    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_SECONDS))


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """Return the API root from a connection's host as users paste it.

    ``""`` → ``https://api.anthropic.com``; ``gw.example.com/anthropic/v1/`` →
    ``https://gw.example.com/anthropic``; ``localhost:8765`` → ``http://localhost:8765``.
    """
    text = (host or "").strip()
    if not text:
        return FIRST_PARTY_BASE_URL
    if "://" not in text:
        text = f"{'http' if _is_loopback(text) else 'https'}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{host!r} is not an http(s) URL")
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{netloc}{path}"


def _is_loopback(text: str) -> bool:
    hostname = urlsplit(f"//{text}").hostname or ""
    if hostname in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def settings_from_connection(conn: Any) -> ClaudeSettings:
    """Read :class:`ClaudeSettings` from an Airflow connection; ``ConnectionConfigError`` says what to fix."""
    conn_id = conn.conn_id
    if not conn.password:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has no API key: set the key in its password (API key) field"
        )
    extra = conn.extra_dejson or {}

    def option(name: str) -> Any:
        value = extra.get(name, extra.get(f"extra__{CONNECTION_TYPE}__{name}"))
        return None if value in ("", None) else value

    try:
        base_url = normalize_base_url(conn.host, conn.port)
    except ValueError as exc:
        raise ConnectionConfigError(
            f"connection {conn_id!r} has an invalid Base URL: {exc}; set the host to the API root, "
            f"e.g. {FIRST_PARTY_BASE_URL} (or leave it empty for the first-party API)"
        ) from None
    betas = option("anthropic_beta") or ()
    if isinstance(betas, str):
        betas = betas.split(",")
    return ClaudeSettings(
        conn_id=conn_id,
        base_url=base_url,
        api_key=conn.password,
        anthropic_version=str(option("anthropic_version") or ANTHROPIC_VERSION),
        betas=tuple(flag.strip() for flag in betas if str(flag).strip()),
        timeout=_number(option("timeout"), DEFAULT_TIMEOUT_SECONDS, "timeout", conn_id, float, 0.001),
        max_retries=_number(option("max_retries"), DEFAULT_MAX_RETRIES, "max_retries", conn_id, int, 0),
    )


def _number(value: Any, default: T, name: str, conn_id: str, kind: Callable[[Any], T], low: float) -> T:
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < low:  # type: ignore[operator]
        raise ConnectionConfigError(
            f"connection {conn_id!r}: extra {name!r} must be a number >= {low:g}, got {value!r}; fix it "
            "in the connection's extra fields"
        )
    return number


def build_client(settings: ClaudeSettings, client_class: type[T], *, max_retries: int | None = None) -> T:
    """Build an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic`` from ``settings``."""
    keep_request_bodies_out_of_sdk_logs()
    return client_class(  # type: ignore[call-arg]
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout=settings.client_timeout,
        max_retries=settings.max_retries if max_retries is None else max_retries,
        default_headers=settings.extra_headers,
    )


class _OmitRequestBodies(logging.Filter):
    """Drop request bodies from the SDK's debug line ``Request options: {...}``; keep the rest of it.

    At DEBUG the SDK logs each request's options, ``json_data`` included: the prompts of
    ``count_tokens`` and of synchronous retries. Prompts are never logged, at any level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Request options"):
            record.args = _without_bodies(record.args)
        return True


def _without_bodies(args: Any) -> Any:
    if isinstance(args, Mapping):  # logging unpacks a lone mapping argument into ``record.args``
        return {
            key: "<omitted>" if key in _REQUEST_BODY_OPTIONS and value is not None else value
            for key, value in args.items()
        }
    if isinstance(args, tuple):
        return tuple(_without_bodies(arg) if isinstance(arg, Mapping) else arg for arg in args)
    return args


def keep_request_bodies_out_of_sdk_logs() -> None:
    """Install :class:`_OmitRequestBodies` on the SDK's client logger, once per process."""
    sdk_log = logging.getLogger(_SDK_CLIENT_LOGGER)
    if not any(isinstance(existing, _OmitRequestBodies) for existing in sdk_log.filters):
        sdk_log.addFilter(_OmitRequestBodies())


def build_stream_client(settings: ClaudeSettings, sdk_client: anthropic.Anthropic) -> httpx.Client:
    """Build the plain ``httpx`` client for streamed bodies, with the SDK client's own headers."""
    headers = {
        name: value
        for name, value in {**sdk_client.default_headers, **sdk_client.auth_headers}.items()
        if isinstance(value, str)
    }
    # Redirects are followed by the hook, which never sends the key to another origin.
    return httpx.Client(
        base_url=settings.base_url, headers=headers, timeout=settings.http_timeout, follow_redirects=False
    )


class ClaudeBatchHook(BaseHook):
    """Talk to the Claude Message Batches API through an Airflow connection.

    Methods return plain dicts (the SDK's objects dumped with ``model_dump(mode="json")``), so the
    core never sees SDK types. Errors become this package's exceptions where the caller can act on
    them: a rejected key or an unreachable Base URL → ``ConnectionConfigError``; an unknown batch →
    ``BatchNotFoundError``. Other API failures are the SDK's exceptions (after the retries of reads).

    :param conn_id: the connection id (type ``claude_batch``).
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONNECTION_TYPE
    hook_name = "Claude Message Batches"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self._loaded: ClaudeSettings | None = None
        # False until one call got an answer: the first call fails fast when the host is unreachable.
        self._reached = False
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anthropic.AsyncAnthropic
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def _declared_connection_type(cls) -> dict[str, Any]:
        return next(
            entry
            for entry in get_provider_info()["connection-types"]
            if entry["connection-type"] == cls.conn_type
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's behaviour as the provider info declares it, with the method's
        key spelling (``hidden_fields``, not ``hidden-fields``)."""
        declared = cls._declared_connection_type()["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in declared.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields the provider info declares (``conn-fields``) as form widgets.

        Airflow 3.2 and later build the form from the provider info and never call this; Airflow 3.1
        renders these widgets.
        """
        return connection_form_widgets(cls._declared_connection_type()["conn-fields"])

    # --- settings and clients ----------------------------------------------------------------------

    @property
    def settings(self) -> ClaudeSettings:
        """The connection's settings, read on first use."""
        if self._loaded is None:
            self._loaded = self._remember(settings_from_connection(self.get_connection(self.conn_id)))
        return self._loaded

    async def asettings(self) -> ClaudeSettings:
        """The connection's settings, read without blocking the event loop (triggerer-safe)."""
        if self._loaded is None:
            self._loaded = self._remember(settings_from_connection(await aget_connection(self.conn_id)))
        return self._loaded

    @staticmethod
    def _remember(settings: ClaudeSettings) -> ClaudeSettings:
        from airflow.sdk.log import mask_secret

        mask_secret(settings.api_key)
        return settings

    def get_conn(self) -> anthropic.Anthropic:
        """Return the SDK client (cached), retrying reads ``max_retries`` times."""
        return self._client

    def get_async_conn(self, max_retries: int | None = None) -> anthropic.AsyncAnthropic:
        """Return a new async SDK client; ``max_retries`` overrides the connection's.

        In the triggerer, call :meth:`asettings` first (or use :meth:`aget_batch`), so that reading
        the connection does not block the event loop.
        """
        return build_client(self.settings, anthropic.AsyncAnthropic, max_retries=max_retries)

    @cached_property
    def _client(self) -> anthropic.Anthropic:
        return build_client(self.settings, anthropic.Anthropic)

    @cached_property
    def _client_without_retries(self) -> anthropic.Anthropic:
        return self._client.with_options(max_retries=0)

    @cached_property
    def _stream_client(self) -> httpx.Client:
        return build_stream_client(self.settings, self._client)

    def _async_client(self) -> anthropic.AsyncAnthropic:
        # An async client belongs to the event loop it first ran on.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = self.get_async_conn()
        return client

    def close(self) -> None:
        """Close the HTTP clients this hook opened."""
        for name in ("_stream_client", "_anonymous_client", "_client"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()
        self.__dict__.pop("_client_without_retries", None)

    # --- batches -----------------------------------------------------------------------------------

    def create_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Create a batch from requests in memory, with one POST that is never retried.

        :param requests: ``{"custom_id", "params"}`` dicts.
        """
        batch = self._call(
            CREATE,
            lambda client: client.messages.batches.create(requests=requests),  # type: ignore[arg-type]
            retries=False,
        )
        return batch.model_dump(mode="json")

    def create_batch_from_file(
        self, path: StoragePath | str, request_count: int, body_bytes: int, marker: bytes | None = None
    ) -> dict[str, Any]:
        """Create a batch from a shard file, streamed as the request body; one POST, never retried.

        The file (one request JSON per line) is read in blocks and sent as ``{"requests":[...]}`` with
        an exact ``Content-Length``: memory stays at about one block whatever the shard's size. If the
        file does not hold ``request_count`` requests making ``body_bytes`` bytes, the upload is cut
        short before its end and ``InputError`` is raised: no batch can be made from a partial body.

        :param path: the shard file (any path-like storage location, or a local path string).
        :param request_count: requests in the shard.
        :param body_bytes: the exact size of the shard's body (see ``limits.batch_body_size``).
        :param marker: the batch's marker request line, sent after the shard's (``batch/marker.py``).
        """
        location = Path(path) if isinstance(path, str) else path
        with location.open("rb") as handle:
            body = iter_batch_body(
                iter(lambda: handle.read(DEFAULT_CHUNK_SIZE), b""),
                request_count=request_count,
                body_bytes=body_bytes,
                source=str(location),
                marker=marker,
            )
            length = sent_body_size(body_bytes, request_count, marker)
            response = self._send(
                CREATE,
                "POST",
                BATCHES_PATH,
                content=body,
                headers={"Content-Length": str(length), "Content-Type": "application/json"},
            )
        try:
            return MessageBatch.model_validate(orjson.loads(response.content)).model_dump(mode="json")
        except ValueError as exc:
            # A success status with a body that is not a batch: a batch may exist all the same.
            raise AfterSubmitError(
                f"{self.settings.base_url} answered the create with HTTP {response.status_code} and a body "
                f"that is not a batch ({type(exc).__name__}); the batch may exist and will be looked up. "
                f"Check the Base URL of connection {self.conn_id!r}"
            ) from None

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the batch (its status, counts, ``results_url`` ...)."""
        batch = self._call("read a batch", lambda c: c.messages.batches.retrieve(batch_id), batch_id=batch_id)
        return batch.model_dump(mode="json")

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Ask the API to cancel the batch; return it (``canceling``)."""
        batch = self._call("cancel a batch", lambda c: c.messages.batches.cancel(batch_id), batch_id=batch_id)
        return batch.model_dump(mode="json")

    def delete_batch(self, batch_id: str) -> dict[str, Any]:
        """Delete an ended batch; return ``{"id", "type": "message_batch_deleted"}``."""
        deleted = self._call(
            "delete a batch", lambda c: c.messages.batches.delete(batch_id), batch_id=batch_id
        )
        return deleted.model_dump(mode="json")

    def iter_batches(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Yield every batch of the workspace, newest first, fetching pages of ``limit`` as needed."""
        after_id: str | anthropic.Omit = anthropic.omit
        while True:
            page = self._call(
                "list batches",
                lambda c, cursor=after_id: c.messages.batches.list(limit=limit, after_id=cursor),
            )
            for batch in page.data:
                yield batch.model_dump(mode="json")
            if not page.has_more or not page.last_id:
                return
            after_id = page.last_id

    def count_tokens(self, params: dict[str, Any]) -> int:
        """Return the input tokens of request ``params``; fields the endpoint does not take are ignored."""
        accepted = _count_tokens_fields()
        arguments = {key: value for key, value in params.items() if key in accepted}
        counted = self._call("count tokens", lambda c: c.messages.count_tokens(**arguments))
        return int(counted.input_tokens)

    def iter_results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Stream the batch's results as dicts, one line in memory at a time.

        :raises ResultsUnavailableError: the batch has not ended, or its results were archived.
        :raises ResultsStreamInterrupted: the download stopped before its end (download again).
        """
        batch = self.get_batch(batch_id)
        if batch.get("archived_at"):
            raise ResultsUnavailableError(
                f"the results of batch {batch_id} were archived at {batch['archived_at']} (results are "
                "kept 29 days after creation) and can no longer be downloaded"
            )
        if not batch.get("results_url"):
            raise ResultsUnavailableError(
                f"batch {batch_id} has no results yet (status {batch.get('processing_status')}); wait for "
                "it to end before reading its results"
            )
        with self._open_results(batch_id, self._results_path(batch["results_url"])) as response:
            try:
                yield from iter_records(response.iter_bytes(), source=f"results of batch {batch_id}")
            except httpx.HTTPError as exc:
                raise ResultsStreamInterrupted(
                    f"the download of the results of batch {batch_id} from {self.settings.base_url} broke "
                    f"off ({type(exc).__name__}: {exc}); download the results again"
                ) from exc

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap call (list one batch) and say whether the connection works, and if not why."""
        try:
            self._call("list batches", lambda c: c.messages.batches.list(limit=1), retries=False)
        except ConnectionConfigError as exc:
            return False, str(exc)
        except anthropic.APIStatusError as exc:
            return False, (
                f"connection {self.conn_id!r} reached {self.settings.base_url}, which answered HTTP "
                f"{exc.status_code} ({exc.type or 'error'}): "
                + ("try again in a minute" if _retryable(exc) else "check the Base URL and the extras")
            )
        except anthropic.APIConnectionError as exc:
            return False, (
                f"connection {self.conn_id!r}: the call to {self.settings.base_url} failed ({_cause(exc)}); "
                "check the Base URL and the network, then try again"
            )
        return True, f"connection {self.conn_id!r}: {self.settings.base_url} accepted the API key"

    # --- async -------------------------------------------------------------------------------------

    async def aget_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the batch, with the async client (for triggers)."""
        await self.asettings()
        batch = await self._acall("read a batch", lambda c: c.messages.batches.retrieve(batch_id), batch_id)
        return batch.model_dump(mode="json")

    async def acancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Ask the API to cancel the batch, with the async client (for triggers)."""
        await self.asettings()
        batch = await self._acall("cancel a batch", lambda c: c.messages.batches.cancel(batch_id), batch_id)
        return batch.model_dump(mode="json")

    def get_model_info(self, model_id: str) -> dict[str, Any] | None:
        """Return the models endpoint's entry for ``model_id`` exactly as written, ``None`` when the
        endpoint answers that no such model exists.

        A 404 is told apart from an endpoint that is not there (a gateway that forwards only the batch
        endpoints) by listing models: when the list is missing too, ``anthropic.NotFoundError`` is raised.

        :raises anthropic.APIError: the endpoint gave no usable answer (unreachable, missing, refused).
        """
        import anthropic

        client = self._client_without_retries
        try:
            info = client.models.retrieve(model_id)
        except anthropic.NotFoundError:
            client.models.list(limit=1)  # raises NotFoundError as well when the endpoint is missing
            return None
        return info.model_dump(mode="json")

    # --- calls and their errors --------------------------------------------------------------------

    def _call(
        self,
        action: str,
        call: Callable[[anthropic.Anthropic], T],
        *,
        batch_id: str | None = None,
        retries: bool = True,
    ) -> T:
        """Run an SDK call with the package's errors; the first call of the hook fails fast."""
        with self._translated(action, batch_id):
            if retries and self._reached:
                return call(self._client)
            try:
                result = call(self._client_without_retries)
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                if not retries or not _retryable(exc) or self._unreachable_error(exc) is not None:
                    raise
                time.sleep(_retry_delay(exc, attempt=0))
                result = call(self._client)
            self._reached = True
            return result

    async def _acall(
        self, action: str, call: Callable[[anthropic.AsyncAnthropic], Awaitable[T]], batch_id: str | None
    ) -> T:
        client = self._async_client()
        with self._translated(action, batch_id):
            if self._reached:
                return await call(client)
            try:
                result = await call(client.with_options(max_retries=0))
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                if not _retryable(exc) or self._unreachable_error(exc) is not None:
                    raise
                await asyncio.sleep(_retry_delay(exc, attempt=0))
                result = await call(client)
            self._reached = True
            return result

    @contextmanager
    def _translated(self, action: str, batch_id: str | None) -> Iterator[None]:
        try:
            yield
        except anthropic.APIError as exc:
            if isinstance(exc, anthropic.APIStatusError):
                self._reached = True  # an answer, even an error, proves the Base URL is right
            translated = self._translate(exc, action, batch_id)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, exc: anthropic.APIError, action: str, batch_id: str | None) -> Exception | None:
        base_url = self.settings.base_url
        if isinstance(exc, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
            return ConnectionConfigError(
                f"connection {self.conn_id!r} was rejected by {base_url} when trying to {action} "
                f"(HTTP {exc.status_code} {exc.type or ''}): set a valid API key in its password field"
            )
        if isinstance(exc, anthropic.NotFoundError):
            if batch_id is not None:
                return BatchNotFoundError(
                    f"batch {batch_id} was not found by connection {self.conn_id!r} ({base_url}): check "
                    "the id; a batch is only visible to keys of the workspace that created it, and a "
                    "deleted batch is gone"
                )
            return ConnectionConfigError(
                f"{base_url} answered 404 to '{action}' for connection {self.conn_id!r}: set the Base "
                f"URL to the API root (e.g. {FIRST_PARTY_BASE_URL}), without the endpoint path"
            )
        if isinstance(exc, (anthropic.BadRequestError, anthropic.ContentTooLargeError)) and action == CREATE:
            return InputError(
                f"the API refused to {action} (HTTP {exc.status_code}): {exc.api_message or exc}"
            )
        if not self._reached:
            return self._unreachable_error(exc)
        return None

    def _unreachable_error(self, exc: BaseException) -> ConnectionConfigError | None:
        cause = _unreachable_cause(exc)
        if cause is None:
            return None
        return ConnectionConfigError(
            f"connection {self.conn_id!r} cannot reach its Base URL {self.settings.base_url} "
            f"({type(cause).__name__}: {cause}): check the host in the connection, and that the server "
            "is up and reachable from the workers"
        )

    # --- the streamed calls ------------------------------------------------------------------------

    def _send(
        self,
        action: str,
        method: str,
        url: str,
        *,
        stream: bool = False,
        client: httpx.Client | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request with the stream client: no retry; errors as the SDK's and the package's."""
        client = client or self._stream_client
        request = client.build_request(method, url, **kwargs)
        with self._translated(action, None):
            try:
                response = client.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                raise anthropic.APITimeoutError(request=request) from exc  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                raise anthropic.APIConnectionError(message=str(exc), request=request) from exc  # type: ignore[arg-type]
            if response.status_code >= 400:
                raise _status_error(response)
        self._reached = True
        return response

    @contextmanager
    def _open_results(self, batch_id: str, path: str) -> Iterator[httpx.Response]:
        """Open the results download, retrying 429 / 5xx / 529 / connection errors with backoff."""
        response = None
        attempt = 0
        while response is None:
            try:
                response = self._follow_redirects(self._send("download results", "GET", path, **_RESULTS_GET))
            except anthropic.NotFoundError as exc:
                raise ResultsUnavailableError(
                    f"the results of batch {batch_id} are not available ({exc.api_message or 'not found'}); "
                    "they may have been archived (29 days after creation) or deleted"
                ) from exc
            except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
                if not _retryable(exc) or attempt >= self.settings.max_retries:
                    raise
                time.sleep(_retry_delay(exc, attempt))
                attempt += 1
        try:
            yield response
        finally:
            response.close()

    def _follow_redirects(self, response: httpx.Response) -> httpx.Response:
        """Follow the results download's redirects; credentials go to the Base URL's origin only.

        A redirect to another origin (a signed storage URL, say) is fetched without any credential.
        """
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = response.url.join(response.headers["location"])
            response.close()
            if _origin(target) == _origin(httpx.URL(self.settings.base_url)):
                response = self._send("download results", "GET", str(target), **_RESULTS_GET)
            else:
                response = self._send(
                    "download results", "GET", str(target), client=self._anonymous_client, **_RESULTS_GET
                )
        response.close()
        raise ResultsUnavailableError(
            f"the results download from {self.settings.base_url} was redirected more than {MAX_REDIRECTS} "
            "times; check the Base URL of the connection"
        )

    @cached_property
    def _anonymous_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.settings.http_timeout, follow_redirects=False)

    def _results_path(self, results_url: str) -> str:
        """Return where to download results from: always through the connection's Base URL.

        A pass-through gateway may return the API's own ``results_url``: its path is then fetched from
        the gateway, so the key is never sent to a host other than the connection's.
        """
        base = urlsplit(self.settings.base_url)
        target = urlsplit(results_url)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return results_url
        return target.path.lstrip("/") + (f"?{target.query}" if target.query else "")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _status_error(response: httpx.Response) -> anthropic.APIStatusError:
    """Build the SDK's exception for an error answer of the stream client (read in full: it is small)."""
    response.read()
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.text[:500]
    status = response.status_code
    error_class = _STATUS_ERRORS.get(status) or (
        anthropic.InternalServerError if status >= 500 else anthropic.APIStatusError
    )
    message = f"Error code: {status} - {body}"
    return error_class(message, response=response, body=body)  # type: ignore[arg-type]


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUSES or exc.status_code >= 500
    return isinstance(exc, anthropic.APIConnectionError)


def _retry_delay(exc: Exception, attempt: int) -> float:
    """Seconds before the next attempt: the server's ``retry-after`` if it sent one, else backoff."""
    if isinstance(exc, anthropic.APIStatusError):
        asked = parse_retry_after(exc.response.headers, now=time.time())
        if asked is not None:
            return min(asked, RETRY_AFTER_CAP)
    return min(RETRY_BASE_DELAY * 2**attempt, RETRY_MAX_DELAY) * random.uniform(0.75, 1.0)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


def _unreachable_cause(exc: BaseException) -> OSError | None:
    """Return the refused connection or failed name lookup behind ``exc``, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)) or (
            isinstance(current, OSError) and current.errno in _UNREACHABLE_ERRNOS
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


@functools.cache
def _count_tokens_fields() -> frozenset[str]:
    """The request fields ``count_tokens`` takes (not a request's ``max_tokens`` or ``temperature``)."""
    signature = inspect.signature(Messages.count_tokens)
    return frozenset(
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and not name.startswith("extra_")
        and name not in ("timeout", "user_profile_id", "workspace_id")
    )
