"""The download of a batch's results, streamed one line at a time.

Results are always downloaded through the connection's Base URL, and the key is sent to no other
origin: a ``results_url`` on another host (a gateway passing the API's answer through) is fetched by
its path from the Base URL (:func:`results_path`), and a redirect to another origin is followed with
the anonymous client. Opening the download is retried by the :class:`ReadRetryPolicy`; a download that
breaks off once open is ``ResultsStreamInterrupted`` (the caller downloads again). A 404 on the
download of a batch that has ended is results lagging the status: it is waited for within the policy's
``results_lag_seconds``, then ``ResultsUnavailableError`` names the batch (never a Base URL to fix).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import anthropic
import httpx

from airflow_claude_batch.core.run import iter_records, mask_urls, masked_url
from airflow_claude_batch.exceptions import ResultsStreamInterrupted, ResultsUnavailableError
from airflow_claude_batch.hooks.api_errors import DOWNLOAD
from airflow_claude_batch.hooks.read_retries import ReadRetryPolicy

MAX_REDIRECTS = 5
_RESULTS_GET: dict[str, Any] = {"stream": True, "headers": {"Accept": "application/binary"}}


class Send(Protocol):
    """Send one request (the hook's stream client by default), its errors as the SDK's exceptions."""

    def __call__(
        self, action: str, method: str, url: str, *, client: httpx.Client | None = None, **kwargs: Any
    ) -> httpx.Response: ...


def results_path(base_url: str, results_url: str) -> str:
    """Return where to download results from: always through the connection's Base URL.

    A pass-through gateway may return the API's own ``results_url``: its path is then fetched from
    the gateway, so the key is never sent to a host other than the connection's.
    """
    base = urlsplit(base_url)
    target = urlsplit(results_url)
    if (target.scheme, target.netloc) == (base.scheme, base.netloc):
        return results_url
    return target.path.lstrip("/") + (f"?{target.query}" if target.query else "")


@dataclass(frozen=True)
class ResultsDownload:
    """The results download of one connection.

    :param base_url: the connection's Base URL.
    :param send: sends a request with the stream client (or the ``client`` given).
    :param anonymous_client: returns the client without credentials, for another origin.
    :param retries: the retries of opening the download.
    """

    base_url: str
    send: Send
    anonymous_client: Callable[[], httpx.Client]
    retries: ReadRetryPolicy

    def iter_results(self, batch_id: str, batch: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Stream the results of ``batch`` (as the API last described it) as dicts.

        :raises ResultsUnavailableError: the batch has not ended, or its results were archived.
        :raises ResultsStreamInterrupted: the download stopped before its end (download again).
        """
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
        with self._open(batch_id, results_path(self.base_url, batch["results_url"])) as response:
            try:
                yield from iter_records(response.iter_bytes(), source=f"results of batch {batch_id}")
            except httpx.HTTPError as exc:
                raise ResultsStreamInterrupted(
                    f"the download of the results of batch {batch_id} from {masked_url(self.base_url)} "
                    f"broke off ({type(exc).__name__}: {mask_urls(str(exc))}); download the results again"
                ) from exc

    @contextmanager
    def _open(self, batch_id: str, path: str) -> Iterator[httpx.Response]:
        """Open the results download, retrying 429 / 5xx / 529 / connection errors, and waiting
        (within ``results_lag_seconds``) for results not found yet."""
        try:
            for lagging in self.retries.lag_retrying():
                with lagging:
                    response = self._open_once(path)
        except anthropic.NotFoundError as exc:
            raise ResultsUnavailableError(
                f"the results of batch {batch_id} were still not found "
                f"{self.retries.results_lag_seconds:g} s after the batch was read as ended "
                f"({exc.api_message or 'not found'}): results may lag the batch's status; the task's "
                "retry downloads them again (raise [claude_batch] results_lag_seconds to wait longer). "
                "If it persists, the batch may have been deleted"
            ) from exc
        try:
            yield response
        finally:
            response.close()

    def _open_once(self, path: str) -> httpx.Response:
        """One open of the download, with the read retries of 429 / 5xx / 529 / connection errors."""
        for attempt in self.retries.retrying():
            with attempt:
                return self._follow_redirects(self.send(DOWNLOAD, "GET", path, **_RESULTS_GET))
        raise AssertionError("unreachable: the retry loop re-raises its last error")

    def _follow_redirects(self, response: httpx.Response) -> httpx.Response:
        """Follow the download's redirects; credentials go to the Base URL's origin only.

        A redirect to another origin (a signed storage URL, say) is fetched without any credential.
        """
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = response.url.join(response.headers["location"])
            response.close()
            if _origin(target) == _origin(httpx.URL(self.base_url)):
                response = self.send(DOWNLOAD, "GET", str(target), **_RESULTS_GET)
            else:
                response = self.send(
                    DOWNLOAD, "GET", str(target), client=self.anonymous_client(), **_RESULTS_GET
                )
        response.close()
        raise ResultsUnavailableError(
            f"the results download from {masked_url(self.base_url)} was redirected more than {MAX_REDIRECTS} "
            "times; check the Base URL of the connection"
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
