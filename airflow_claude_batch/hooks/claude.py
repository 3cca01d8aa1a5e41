"""The Claude Message Batches hook: the package's one way to call the API.

Its parts, in ``hooks/``: the connection (``connection_settings``), the clients, all built from one
:class:`ClaudeSettings` (``clients``), the retries of reads (``read_retries``), the results download
(``results_stream``) and the errors (``api_errors``).

The create is never retried automatically (a lost answer may still have made a batch, and the API has
no idempotency key): the submit looks the batch up (``batch.submission``). A hook's first call fails at
once, with one ``ConnectionConfigError``, when the Base URL refuses connections or does not resolve.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import orjson
from airflow.sdk import BaseHook
from anthropic.types.messages import MessageBatch

from airflow_claude_batch import CONNECTION_TYPE, DEFAULT_CONN_ID
from airflow_claude_batch import settings as provider_settings
from airflow_claude_batch.compat import AirflowNotFoundException, aget_connection
from airflow_claude_batch.core.run import DEFAULT_CHUNK_SIZE, StoragePath
from airflow_claude_batch.core.submit import iter_batch_body, sent_body_size
from airflow_claude_batch.exceptions import AfterSubmitError, ConnectionConfigError
from airflow_claude_batch.hooks.api_errors import (
    CREATE,
    aretried_while_not_found,
    failed_test_message,
    is_api_error_body,
    retried_while_not_found,
    translate,
    unreachable_cause,
)
from airflow_claude_batch.hooks.clients import (
    build_anonymous_client,
    build_client,
    build_stream_client,
    count_tokens_fields,
    send_request,
)
from airflow_claude_batch.hooks.connection_settings import (
    ClaudeSettings,
    form_widgets,
    missing_connection,
    normalize_base_url,
    settings_from_connection,
    ui_field_behaviour,
)
from airflow_claude_batch.hooks.read_retries import ReadRetryPolicy
from airflow_claude_batch.hooks.results_stream import ResultsDownload

__all__ = [
    "ClaudeBatchHook",
    "ClaudeSettings",
    "is_api_error_body",
    "normalize_base_url",
    "settings_from_connection",
]

T = TypeVar("T")

BATCHES_PATH = "/v1/messages/batches"


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
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's behaviour as the provider info declares it."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields the provider info declares as form widgets (read by Airflow 3.1)."""
        return form_widgets()

    # --- settings and clients ----------------------------------------------------------------------

    @property
    def settings(self) -> ClaudeSettings:
        """The connection's settings, read on first use."""
        if self._loaded is None:
            try:
                connection = self.get_connection(self.conn_id)
            except AirflowNotFoundException:
                raise missing_connection(self.conn_id) from None
            self._loaded = self._remember(settings_from_connection(connection))
        return self._loaded

    async def asettings(self) -> ClaudeSettings:
        """The connection's settings, read without blocking the event loop (triggerer-safe)."""
        if self._loaded is None:
            self._loaded = self._remember(settings_from_connection(await aget_connection(self.conn_id)))
        return self._loaded

    @staticmethod
    def _remember(settings: ClaudeSettings) -> ClaudeSettings:
        from airflow.sdk.log import mask_secret

        for secret in settings.secrets:  # the key, and credentials in the Base URL
            mask_secret(secret)
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

    @cached_property
    def _anonymous_client(self) -> httpx.Client:
        return build_anonymous_client(self.settings)

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
        :param marker: the batch's marker request line, sent after the shard's (``core/requests/marker.py``).
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
                f"{self.settings.shown_base_url} answered the create with HTTP {response.status_code} and a "
                f"body that is not a batch ({type(exc).__name__}); the batch may exist and will be looked "
                f"up. Check the Base URL of connection {self.conn_id!r}"
            ) from None

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the batch (its status, counts, ``results_url`` ...).

        A 404 is read again a few times (``api_errors.NOT_FOUND_DELAYS``: a batch created a moment ago
        may not be visible yet) before ``BatchNotFoundError`` is raised.
        """
        batch = retried_while_not_found(
            lambda: self._call(
                "read a batch", lambda c: c.messages.batches.retrieve(batch_id), batch_id=batch_id
            )
        )
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
        accepted = count_tokens_fields()
        arguments = {key: value for key, value in params.items() if key in accepted}
        counted = self._call("count tokens", lambda c: c.messages.count_tokens(**arguments))
        return int(counted.input_tokens)

    def iter_results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Stream the batch's results as dicts, one line in memory at a time.

        :raises ResultsUnavailableError: the batch has not ended, or its results were archived.
        :raises ResultsStreamInterrupted: the download stopped before its end (download again).
        """
        download = ResultsDownload(
            self.settings.client_base_url, self._send, lambda: self._anonymous_client, self._read_retries
        )
        yield from download.iter_results(batch_id, self.get_batch(batch_id))

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap call (list one batch) and say whether the connection works, and if not why."""
        try:
            self._call("list batches", lambda c: c.messages.batches.list(limit=1), retries=False)
        except (ConnectionConfigError, anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
            return False, failed_test_message(exc, self.settings)
        return True, f"connection {self.conn_id!r}: {self.settings.shown_base_url} accepted the API key"

    # --- async -------------------------------------------------------------------------------------

    async def aget_batch(self, batch_id: str) -> dict[str, Any]:
        """Return the batch, with the async client (for triggers)."""
        await self.asettings()
        batch = await aretried_while_not_found(
            lambda: self._acall("read a batch", lambda c: c.messages.batches.retrieve(batch_id), batch_id)
        )
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
        client = self._client_without_retries
        try:
            info = client.models.retrieve(model_id)
        except anthropic.NotFoundError:
            client.models.list(limit=1)  # raises NotFoundError as well when the endpoint is missing
            return None
        return info.model_dump(mode="json")

    # --- calls and their errors --------------------------------------------------------------------

    @cached_property
    def _read_retries(self) -> ReadRetryPolicy:
        return ReadRetryPolicy(self.settings.max_retries, provider_settings.results_lag_seconds())

    def _call(
        self,
        action: str,
        call: Callable[[anthropic.Anthropic], T],
        *,
        batch_id: str | None = None,
        retries: bool = True,
    ) -> T:
        """Run an SDK call with the package's errors; the first call of the hook fails fast.

        Once the Base URL has answered, reads are retried by the SDK; before, by the read retry policy
        with the SDK's retries off, giving up at once on an unreachable host. ``retries=False``: one try.
        """
        with self._translated(action, batch_id):
            if not retries:
                result = call(self._client_without_retries)
            elif self._reached:
                return call(self._client)
            else:
                for attempt in self._read_retries.retrying(give_up=unreachable_cause):
                    with attempt:
                        result = call(self._client_without_retries)
            self._reached = True
            return result

    async def _acall(
        self, action: str, call: Callable[[anthropic.AsyncAnthropic], Awaitable[T]], batch_id: str | None
    ) -> T:
        client = self._async_client()
        with self._translated(action, batch_id):
            if self._reached:
                return await call(client)
            async for attempt in self._read_retries.async_retrying(give_up=unreachable_cause):
                with attempt:
                    result = await call(client.with_options(max_retries=0))
            self._reached = True
            return result

    @contextmanager
    def _translated(self, action: str, batch_id: str | None) -> Iterator[None]:
        try:
            yield
        except anthropic.APIError as exc:
            if isinstance(exc, anthropic.APIStatusError):
                self._reached = True  # an answer, even an error, proves the Base URL is right
            translated = translate(exc, self.settings, action, batch_id, reached=self._reached)
            if translated is None:
                raise
            raise translated from exc

    def _send(
        self, action: str, method: str, url: str, *, client: httpx.Client | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one request with the stream client (or ``client``): no retry; the package's errors."""
        with self._translated(action, None):
            response = send_request(client or self._stream_client, method, url, **kwargs)
        self._reached = True
        return response
