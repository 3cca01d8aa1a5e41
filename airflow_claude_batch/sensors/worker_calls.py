"""The calls the wait sensor makes from a worker (``deferrable=False``): one retrieve per poll, and the
cancel at a missed deadline, with the synchronous client and the SDK's own retries off.

The deferred wait makes its calls from the triggerer instead (:mod:`airflow_claude_batch.triggers`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_claude_batch.core.wait import ErrorKind, PollError, parse_batch, poll_error_from_exception
from airflow_claude_batch.triggers.coalesced_poller import POLL_REQUEST_TIMEOUT_S
from airflow_claude_batch.triggers.deadline_cancel import (
    CANCEL_REQUEST_TIMEOUT_S,
    cancel_retrying,
    why_not_cancelled,
)

if TYPE_CHECKING:
    import anthropic

#: Seconds between reads of a batch that answered 404, before the 404 counts (as the hook's reads).
NOT_FOUND_DELAYS_S = (1.0, 2.0, 4.0)


def worker_client(conn_id: str) -> anthropic.Anthropic:
    """Return the connection's client with the SDK's retries off: the backoff between polls is decided
    by :mod:`airflow_claude_batch.core.wait.polling`, shared with the trigger.

    :param conn_id: the Claude connection.
    """
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    return ClaudeBatchHook(conn_id).get_conn().with_options(max_retries=0)


def connection_base_url(conn_id: str) -> str:
    """Return the connection's Base URL, for the batch's link; empty when the connection cannot be
    read (the first poll then reports why).

    :param conn_id: the Claude connection.
    """
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook

    try:
        return ClaudeBatchHook(conn_id).settings.base_url
    except Exception:
        return ""


def retrieve_batch(
    client: anthropic.Anthropic, batch_id: str
) -> tuple[dict[str, Any] | None, PollError | None]:
    """Poll the batch; return it as a plain dict, or the classified error.

    A 404 is read again after each of :data:`NOT_FOUND_DELAYS_S` before it counts: the wait's first
    read comes right after the create, and a new batch can be unknown for a moment.

    :param client: the client from :func:`worker_client`.
    :param batch_id: the batch.
    """
    for delay in NOT_FOUND_DELAYS_S:
        batch, error = _retrieve_once(client, batch_id)
        if error is None or error.kind != ErrorKind.NOT_FOUND:
            return batch, error
        time.sleep(delay)
    return _retrieve_once(client, batch_id)


def _retrieve_once(
    client: anthropic.Anthropic, batch_id: str
) -> tuple[dict[str, Any] | None, PollError | None]:
    try:
        batches = client.messages.batches
        response = batches.with_raw_response.retrieve(batch_id, timeout=POLL_REQUEST_TIMEOUT_S)
        body = response.read()
    except Exception as exc:
        error = poll_error_from_exception(exc, now=time.time())
        if error is None:
            raise
        return None, error
    return parse_batch(body)


def cancel_batch(client: anthropic.Anthropic, batch_id: str) -> str | None:
    """Ask the API to cancel the batch; return ``None`` when it accepted, else why it did not.

    :param client: the client from :func:`worker_client`.
    :param batch_id: the batch.
    """
    try:
        for attempt in cancel_retrying():
            with attempt:
                client.messages.batches.with_raw_response.cancel(batch_id, timeout=CANCEL_REQUEST_TIMEOUT_S)
    except Exception as exc:
        return why_not_cancelled(exc)
    return None
