"""The HTTP clients of a connection, all built from one :class:`ClaudeSettings`.

- the SDK clients (``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic``): JSON calls, with the SDK's
  own retries of reads (``max_retries``, see :mod:`airflow_claude_batch.hooks.read_retries`);
- the stream client (plain ``httpx``): the shard files up and the results down, with the SDK client's
  own headers copied so that they cannot drift; it follows no redirect by itself, and its failures
  are raised as the SDK's exceptions (:func:`send_request`) so that every call fails alike;
- the anonymous client: a redirect of the results download to another origin, fetched without any
  credential.

Building an SDK client also keeps request bodies (prompts) out of the SDK's debug log, and the
credentials of URLs (a signed results URL's token, say) out of the HTTP libraries' request lines.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import anthropic
import httpx
from anthropic.resources.messages import Messages

from airflow_claude_batch.core.run import mask_urls
from airflow_claude_batch.hooks.api_errors import status_error, transport_error
from airflow_claude_batch.hooks.connection_settings import ClaudeSettings

T = TypeVar("T")

_SDK_CLIENT_LOGGER = "anthropic._base_client"
# Loggers that write request URLs: the SDK's, and the HTTP clients' ("HTTP Request: GET <url>").
_URL_LOGGERS = (_SDK_CLIENT_LOGGER, "httpx", "httpx2")
_REQUEST_BODY_OPTIONS = frozenset({"json_data", "content", "files", "extra_json"})


def build_client(settings: ClaudeSettings, client_class: type[T], *, max_retries: int | None = None) -> T:
    """Build an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic`` from ``settings``.

    :param max_retries: the SDK's retries of reads; the connection's ``max_retries`` when ``None``.
    """
    keep_request_bodies_out_of_sdk_logs()
    keep_url_secrets_out_of_http_logs()
    return client_class(  # type: ignore[call-arg]
        api_key=settings.api_key,
        base_url=settings.client_base_url,
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


class _MaskUrlSecrets(logging.Filter):
    """Mask the credentials of every URL in a log line (``user:password@``, ``?key=``, signatures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to logging's own error handling
            return True
        masked = mask_urls(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def keep_url_secrets_out_of_http_logs() -> None:
    """Install :class:`_MaskUrlSecrets` on the loggers that write request URLs, once per process."""
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _MaskUrlSecrets) for existing in logger.filters):
            logger.addFilter(_MaskUrlSecrets())


def build_stream_client(settings: ClaudeSettings, sdk_client: anthropic.Anthropic) -> httpx.Client:
    """Build the plain ``httpx`` client for streamed bodies, with the SDK client's own headers."""
    keep_url_secrets_out_of_http_logs()
    headers = {
        name: value
        # The connection's own headers last, as the SDK sends them (a gateway's Basic authorization).
        for name, value in {
            **sdk_client.default_headers,
            **sdk_client.auth_headers,
            **settings.extra_headers,
        }.items()
        if isinstance(value, str)
    }
    # Redirects are followed by the results download, which never sends the key to another origin.
    return httpx.Client(
        base_url=settings.client_base_url,
        headers=headers,
        timeout=settings.http_timeout,
        follow_redirects=False,
    )


def build_anonymous_client(settings: ClaudeSettings) -> httpx.Client:
    """Build the ``httpx`` client without credentials, for a redirect to another origin."""
    return httpx.Client(timeout=settings.http_timeout, follow_redirects=False)


def send_request(
    client: httpx.Client, method: str, url: str, *, stream: bool = False, **kwargs: Any
) -> httpx.Response:
    """Send one request with an ``httpx`` client, once; a failure is raised as the SDK's exception.

    :param stream: leave the body unread (the caller reads and closes the response).
    :raises anthropic.APIStatusError: the answer was an HTTP error (its subclass for the status).
    :raises anthropic.APIConnectionError: no answer (``APITimeoutError`` for a timeout).
    """
    request = client.build_request(method, url, **kwargs)
    try:
        response = client.send(request, stream=stream)
    except httpx.TransportError as exc:
        raise transport_error(exc, request) from exc
    if response.status_code >= 400:
        raise status_error(response)
    return response


@functools.cache
def count_tokens_fields() -> frozenset[str]:
    """The request fields ``count_tokens`` takes (not a request's ``max_tokens`` or ``temperature``)."""
    signature = inspect.signature(Messages.count_tokens)
    return frozenset(
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and not name.startswith("extra_")
        and name not in ("timeout", "user_profile_id", "workspace_id")
    )
