"""The API's errors, as the SDK's exceptions and as this package's where the caller can act on them.

- The stream client's failures become the SDK's exceptions (:func:`status_error`,
  :func:`transport_error`), so that every call fails alike whichever client made it.
- :func:`translate` turns those the caller can act on into this package's: the account's errors (a
  spend limit reached, billing, an organization on hold, a key without permission; see
  :func:`account_error`) → ``AccountError``; a rejected key or an unreachable Base URL →
  ``ConnectionConfigError``; an unknown batch → ``BatchNotFoundError``; a create the API refused →
  ``InputError``. A create's error answer without the API's own error body (:func:`is_api_error_body`:
  a gateway's page, a proxy's 4xx) proves nothing about the create and is left as the SDK's exception.
  A 404 on a results download is left as it is: the batch is known (it was just read), so its results
  lag its status or are gone, and the download decides
  (:mod:`~airflow_claude_batch.hooks.results_stream`); it is never a wrong Base URL. Every message
  names the connection and what to fix, never the key nor the Base URL's credentials.
- :func:`failed_test_message` says the same for the connection test.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anthropic
import httpx
import orjson

from airflow_claude_batch.core.run import mask_urls
from airflow_claude_batch.exceptions import (
    AccountError,
    BatchNotFoundError,
    ConnectionConfigError,
    InputError,
)
from airflow_claude_batch.hooks.connection_settings import FIRST_PARTY_BASE_URL, ClaudeSettings
from airflow_claude_batch.hooks.read_retries import is_retryable

CREATE = "create a batch"
#: The results download: its 404 is about the results, not the Base URL.
DOWNLOAD = "download results"
T = TypeVar("T")
#: Seconds between reads of a batch that answered 404: a batch read right after its create can be
#: unknown for a moment (a known report against the SDK), so only the last 404 means "no such batch".
NOT_FOUND_DELAYS = (1.0, 2.0, 4.0)
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


def translate(
    exc: anthropic.APIError, settings: ClaudeSettings, action: str, batch_id: str | None, *, reached: bool
) -> Exception | None:
    """Return this package's exception for ``exc``, or ``None`` to let the SDK's go through.

    :param action: what was being done, for the message (:data:`CREATE` for the create).
    :param batch_id: the batch the call was about, if any: a 404 is then an unknown batch.
    :param reached: whether the Base URL ever answered; if not, a refused connection is a wrong host.
    """
    conn_id, base_url = settings.conn_id, settings.shown_base_url
    if action == CREATE and isinstance(exc, anthropic.APIStatusError) and not is_api_error_body(exc.body):
        return None  # not the API's refusal: the create's outcome is unknown (the submit looks for it)
    account = account_error(exc, settings, action)
    if account is not None:
        return account
    if isinstance(exc, anthropic.AuthenticationError):
        return ConnectionConfigError(
            f"connection {conn_id!r} was rejected by {base_url} when trying to {action} "
            f"(HTTP {exc.status_code} {exc.type or ''}): set a valid API key in its password field"
        )
    if isinstance(exc, anthropic.NotFoundError):
        if action == DOWNLOAD:
            return None  # results not found: the download says so (they can lag the batch's status)
        if batch_id is not None:
            return BatchNotFoundError(
                f"batch {batch_id} was not found by connection {conn_id!r} ({base_url}): check "
                "the id; a batch is only visible to keys of the workspace that created it, and a "
                "deleted batch is gone"
            )
        return ConnectionConfigError(
            f"{base_url} answered 404 to '{action}' for connection {conn_id!r}: set the Base "
            f"URL to the API root (e.g. {FIRST_PARTY_BASE_URL}), without the endpoint path"
        )
    if isinstance(exc, (anthropic.BadRequestError, anthropic.ContentTooLargeError)) and action == CREATE:
        detail = mask_urls(str(exc.api_message or exc))
        return InputError(f"the API refused to {action} (HTTP {exc.status_code}): {detail}")
    if not reached:
        return unreachable_error(exc, settings)
    return None


def is_api_error_body(body: Any) -> bool:
    """Whether an error answer's body is the API's own (``{"type": "error", "error": {"type": ...}}``).

    Only the API's body proves the API refused the request; the same status from a gateway or a proxy
    (an HTML page, an empty body) may have been sent after the request was passed on.
    """
    if not isinstance(body, dict):
        return False
    error = body.get("error")
    return body.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str)


def retried_while_not_found(call: Callable[[], T]) -> T:
    """Run a read of one batch; a 404 is read again after each of :data:`NOT_FOUND_DELAYS`."""
    for delay in NOT_FOUND_DELAYS:
        try:
            return call()
        except BatchNotFoundError:
            time.sleep(delay)
    return call()


async def aretried_while_not_found(call: Callable[[], Awaitable[T]]) -> T:
    """The same as :func:`retried_while_not_found`, awaiting the read and the waits."""
    for delay in NOT_FOUND_DELAYS:
        try:
            return await call()
        except BatchNotFoundError:
            await asyncio.sleep(delay)
    return await call()


#: The account's errors by the API's ``error.details.error_code`` (see the API's errors page and the
#: SDK's ``types/shared/*_error_details.py``): what happened, and what to do.
ACCOUNT_ERROR_CODES = {
    "enforced_spend_limit_reached": (
        "the organization reached the monthly spend limit of its usage tier",
        "raise the tier or wait for the next month (Claude Console, Settings > Limits); retrying now "
        "will not help",
    ),
    "contract_spend_limit_reached": (
        "the organization reached the spend limit of its contract",
        "ask your Anthropic account team to raise it; retrying now will not help",
    ),
    "linked_organization_spend_limit_reached": (
        "the organization that pays for this one reached its spend limit",
        "ask the paying organization's admins to raise it",
    ),
    "linked_organization_billing_unavailable": (
        "the organization that pays for this one cannot be billed",
        "ask the paying organization's admins to fix its billing",
    ),
    "organization_on_hold": (
        "Anthropic has put the organization on hold",
        "no request will succeed until the hold is lifted; contact Anthropic (the appeal link is in "
        "the Claude Console)",
    ),
}
#: How the API's message begins when usage reached a spend limit the organization or workspace set
#: itself (HTTP 400 ``invalid_request_error``, the errors page).
_OWN_SPEND_LIMIT_PREFIXES = (
    "You have reached your specified API usage limits",
    "You have reached your specified workspace API usage limits",
)


def account_error(exc: anthropic.APIError, settings: ClaudeSettings, action: str) -> AccountError | None:
    """Return the ``AccountError`` for an answer that refused the account rather than the request.

    Spend limits (set by the organization or a workspace, the usage tier's, a contract's), billing
    (HTTP 402), an organization on hold and a key without permission (HTTP 403) are told apart by the
    API's ``error_code``, status and message; each says what to do. A spend limit's 429 is not a rate
    limit: it has no ``retry-after``, and waiting minutes does not help.
    """
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    code = getattr(exc, "error_code", None) or _error_code(exc.body)
    message = exc.api_message or ""
    if code in ACCOUNT_ERROR_CODES:
        what, fix = ACCOUNT_ERROR_CODES[code]
    elif message.startswith(_OWN_SPEND_LIMIT_PREFIXES):
        what = "usage reached a spend limit set for the organization or the workspace"
        fix = "raise it in the Claude Console (Settings > Limits), or wait until the date the API names"
    elif exc.status_code == 402 or exc.type == "billing_error":
        what, fix = (
            "the account has a billing problem",
            "fix the payment details in the Claude Console (Billing)",
        )
    elif isinstance(exc, anthropic.PermissionDeniedError):
        where = f"workspace {settings.workspace_id}" if settings.workspace_id else "the key's workspace"
        what = "the API key may not use this resource"
        fix = (
            f"check the key's permissions and {where} in the Claude Console (a key only reaches its "
            "own workspace's batches and models; the extra 'workspace_id' must be that workspace)"
        )
    else:
        return None
    detail = f"{code}: " if code else ""
    return AccountError(
        f"connection {settings.conn_id!r}: {settings.shown_base_url} refused to {action} because {what} "
        f"(HTTP {exc.status_code} {exc.type or 'error'}; {detail}{message or 'no message'}): {fix}"
    )


def _error_code(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    code = details.get("error_code") if isinstance(details, dict) else None
    return code if isinstance(code, str) else None


def unreachable_error(exc: BaseException, settings: ClaudeSettings) -> ConnectionConfigError | None:
    """Return the ``ConnectionConfigError`` for a Base URL that refuses connections or does not resolve."""
    cause = unreachable_cause(exc)
    if cause is None:
        return None
    return ConnectionConfigError(
        f"connection {settings.conn_id!r} cannot reach its Base URL {settings.shown_base_url} "
        f"({type(cause).__name__}: {mask_urls(str(cause))}): check the host in the connection, and that "
        "the server is up and reachable from the workers"
    )


def unreachable_cause(exc: BaseException) -> OSError | None:
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


def failed_test_message(exc: Exception, settings: ClaudeSettings) -> str:
    """Return what the connection test says about ``exc``: what went wrong, and what to do.

    :param exc: a ``ConnectionConfigError`` (its message says it all) or an SDK exception.
    """
    conn_id, base_url = settings.conn_id, settings.shown_base_url
    if isinstance(exc, anthropic.APIStatusError):
        return (
            f"connection {conn_id!r} reached {base_url}, which answered HTTP {exc.status_code} "
            f"({exc.type or 'error'}): "
            + ("try again in a minute" if is_retryable(exc) else "check the Base URL and the extras")
        )
    if isinstance(exc, anthropic.APIConnectionError):
        behind = exc.__cause__ or exc  # the SDK wraps the transport's error
        return (
            f"connection {conn_id!r}: the call to {base_url} failed ({type(behind).__name__}: "
            f"{mask_urls(str(behind))}); "
            "check the Base URL and the network, then try again"
        )
    return mask_urls(str(exc))


def status_error(response: httpx.Response) -> anthropic.APIStatusError:
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


def transport_error(exc: httpx.TransportError, request: httpx.Request) -> anthropic.APIConnectionError:
    """Return the SDK's exception for a stream client's request that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        return anthropic.APITimeoutError(request=request)  # type: ignore[arg-type]
    return anthropic.APIConnectionError(message=str(exc), request=request)  # type: ignore[arg-type]
