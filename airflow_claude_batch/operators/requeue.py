"""The requeue task: the unfinished requests of a round become the next round's shards."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api import MAX_BYTES_PER_SHARD, MAX_REQUESTS_PER_SHARD, parse_retry_after
from airflow_claude_batch.core.requeue import DEFAULT_SYNC_CONCURRENCY, SyncRequestError
from airflow_claude_batch.core.run import RunFolder, ShardDescriptor
from airflow_claude_batch.exceptions import BeforeSubmitError
from airflow_claude_batch.operators.task_inputs import answer_store_for, flag, load_prices

if TYPE_CHECKING:
    import anthropic

    from airflow_claude_batch.core.requeue import SendMessage, SyncRetry


class ClaudeBatchRequeueOperator(BaseOperator):
    """Build the next round's shards from the requests of a round that did not finish.

    Reads the round's outcome files and takes the original request lines (unchanged) of: expired
    requests; errored requests whose error is retryable (``overloaded_error``, ``api_error``,
    ``rate_limit_error``, ``timeout_error``); canceled requests when ``requeue_canceled``, except those
    of a batch that was cancelled on purpose (its ``cancel_initiated_at`` is set), which are listed as
    pending with the reason "canceled by user" unless ``requeue_user_canceled``. Non-retryable errors go
    to ``round-r/dead-letter.jsonl`` with the reason.

    With a budget (the build's ``max_cost_usd``, on its ``budget_basis``), the next round is built only
    when all its requests fit in what the run has left, and synchronous retries stop when the next
    would not fit; what is kept back is listed as pending with the reason
    (``round-r/budget-held.jsonl``, then the run's ``pending.jsonl``).

    A rerun of the task returns what the first run decided (``round-r/requeue.json``), so shards that
    may have been submitted never change. Returns the next round's descriptors, ``[]`` when nothing is
    left to requeue.

    :param shards: the round's fanout outputs (a list of descriptors; templated).
    :param round_index: the round that was fanned out (templated).
    :param storage_conn_id: the connection for the run folder's storage (templated).
    :param requeue_canceled: requeue canceled requests of batches nobody cancelled on purpose.
    :param requeue_user_canceled: requeue canceled requests of batches cancelled on purpose too.
    :param retry_errored_sync: send retryable errored requests once as synchronous Messages calls at
        standard prices (rows in the shard's ``sync_retry.jsonl``, ``price: "standard"``) before
        requeueing the ones that still fail. When the synchronous endpoint definitely refuses not by
        the request's fault (missing, connection refused, key refused), the request is requeued
        (``fell_back``), never dead-lettered, and the round sends no more synchronous calls. A call
        of unknown outcome (a timeout or reset after sending, a 5xx) is possibly billed: an
        ``unknown`` row at its upper cost, the request pending (``sync_outcome_unknown``), never
        resent. After a run cancel (``cancel.json``) no synchronous call and no next round is made.
        A task killed in the middle of a shard's synchronous calls repeats the ones it had not
        recorded.
    :param conn_id: the Claude connection for the synchronous retries (templated).
    :param max_requests_per_shard: requests per next-round shard, at most 99,999 (as on the build operator;
        the last two shards evened out).
    :param max_bytes_per_shard: create-body bytes per next-round shard, at most 256,000,000.
    :param output_parser: as for the fanout, applied to synchronous answers.
    :param output_schema: as for the fanout, applied to synchronous answers.
    :param keep_thinking: as for the fanout.
    :param prices_file: a prices file for the synchronous answers' cost (templated).
    :param sync_concurrency: synchronous calls in flight at once (a 429 is waited out for its
        ``retry-after``).
    :param reuse_answers: store the synchronous retries that succeeded (they passed the parser and the
        schema) in the answer store under the run folder's storage root, for later runs (templated;
        ``True`` or a maximum age: see the build operator).
    """

    template_fields: Sequence[str] = (
        "shards",
        "round_index",
        "storage_conn_id",
        "conn_id",
        "max_requests_per_shard",
        "max_bytes_per_shard",
        "prices_file",
        "retry_errored_sync",
        "reuse_answers",
    )
    ui_color = "#f0ecd8"

    def __init__(
        self,
        *,
        shards: Iterable[dict[str, Any]],
        round_index: int,
        storage_conn_id: str | None = None,
        requeue_canceled: bool = True,
        requeue_user_canceled: bool = False,
        retry_errored_sync: bool | str = False,
        conn_id: str = DEFAULT_CONN_ID,
        max_requests_per_shard: int = MAX_REQUESTS_PER_SHARD,
        max_bytes_per_shard: int = MAX_BYTES_PER_SHARD,
        output_parser: Callable[[str], Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        keep_thinking: bool = False,
        prices_file: str | None = None,
        sync_concurrency: int = DEFAULT_SYNC_CONCURRENCY,
        reuse_answers: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reuse_answers = reuse_answers
        self.sync_concurrency = sync_concurrency
        self.shards = shards
        self.round_index = round_index
        self.storage_conn_id = storage_conn_id
        self.requeue_canceled = requeue_canceled
        self.requeue_user_canceled = requeue_user_canceled
        self.retry_errored_sync = retry_errored_sync
        self.conn_id = conn_id
        self.max_requests_per_shard = max_requests_per_shard
        self.max_bytes_per_shard = max_bytes_per_shard
        self.output_parser = output_parser
        self.output_schema = output_schema
        self.keep_thinking = keep_thinking
        self.prices_file = prices_file

    def execute(self, context: Any) -> list[dict[str, Any]]:
        # Imported here, not at module level: a DAG file's parse does not load the requeue's machinery.
        from airflow_claude_batch.core.report import round_budget
        from airflow_claude_batch.core.requests import ShardLimits
        from airflow_claude_batch.core.requeue import RequeueRule, requeue_round

        shards = [ShardDescriptor.from_dict(shard) for shard in _each(self.shards)]
        round_index = int(self.round_index)
        if not shards:
            self.log.info("round %d has no shards: nothing to requeue", round_index)
            return []
        wrong = [s.index for s in shards if s.round != round_index]
        if wrong:
            raise AirflowFailException(
                f"shards {wrong} are not of round {round_index}: pass the fanout output of that round"
            )
        folder = RunFolder(ObjectStoragePath(shards[0].run_uri, conn_id=self.storage_conn_id))
        try:
            limits = ShardLimits(int(self.max_requests_per_shard), int(self.max_bytes_per_shard))
            record = requeue_round(
                folder,
                round_index,
                shards,
                rule=RequeueRule(self.requeue_canceled, self.requeue_user_canceled),
                limits=limits,
                sync=self._sync_retry() if flag(self.retry_errored_sync, "retry_errored_sync") else None,
                budget=round_budget(folder, round_index, load_prices(self.prices_file, self.storage_conn_id)),
            )
            self._store_answers(folder, shards)
        except BeforeSubmitError as exc:
            raise AirflowFailException(str(exc)) from exc
        return list(record.next_shards)

    def _store_answers(self, folder: RunFolder, shards: list[ShardDescriptor]) -> None:
        """Store the synchronous retries that succeeded (passed the parser and the schema), for later runs."""
        from airflow_claude_batch.core.reuse import store_sync_answers

        store = answer_store_for(self.reuse_answers, folder.storage_root)
        if store is None or not flag(self.retry_errored_sync, "retry_errored_sync"):
            return
        stored = sum(store_sync_answers(store, folder, shard.round, shard.index) for shard in shards)
        self.log.info("reuse_answers: %d synchronous answer(s) stored for later runs", stored)

    def _sync_retry(self) -> SyncRetry:
        from airflow_claude_batch.core.requeue import SyncRetry
        from airflow_claude_batch.core.results import OutputValidator
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        client = ClaudeBatchHook(conn_id=self.conn_id).get_conn()
        return SyncRetry(
            concurrency=int(self.sync_concurrency),
            send=synchronous_sender(client),
            prices=load_prices(self.prices_file, self.storage_conn_id),
            validator=OutputValidator.from_options(
                self.output_parser, self.output_schema, keep_thinking=self.keep_thinking
            ),
        )


#: Waits for a 429's ``retry-after`` before a synchronous call is given up as rate-limited (requeued).
MAX_RATE_LIMIT_WAITS = 3
#: The longest ``retry-after`` honoured, in seconds; a longer one requeues the request instead.
MAX_RETRY_AFTER_SECONDS = 60.0


def synchronous_sender(
    client: anthropic.Anthropic, *, sleep: Callable[[float], None] | None = None
) -> SendMessage:
    """Return a ``SendMessage`` that sends one request's params with ``client.messages.create``.

    API errors become ``SyncRequestError`` with the API's error type, so that the requeue rule can tell
    a retryable failure from one that needs a fix. A 429 is waited out for its ``retry-after`` (at most
    ``MAX_RATE_LIMIT_WAITS`` times, each at most ``MAX_RETRY_AFTER_SECONDS``) before it is given up as
    ``rate_limit_error`` (requeued).

    Only a definite refusal may send the request again: a connection refused (or a connect timeout)
    before anything was sent, a call the SDK will not send, 429 / 529, and a 4xx answered the API's way
    (its error body; a 404 also without one: the endpoint is missing). Of these, failures that are not
    the request's own are marked ``endpoint_fault`` (the request is requeued, never dead-lettered): a
    404 (a gateway that forwards only ``/v1/messages/batches``), a refused key (401/403), an unreachable
    endpoint, and a call the SDK will not send synchronously (a large ``max_tokens``). Everything else
    (a timeout or a reset after sending, 408, 409, any 5xx but 529, a gateway's error page) may have been
    processed and billed: ``outcome_unknown`` (kept pending, counted at its upper cost, never resent).
    """

    import anthropic

    wait = sleep or time.sleep
    plain = client.with_options(max_retries=0)

    def send(params: Mapping[str, Any]) -> Mapping[str, Any]:
        waits = 0
        while True:
            try:
                message = plain.messages.create(**params)
            except anthropic.RateLimitError as exc:
                delay = parse_retry_after(exc.response.headers, now=time.time())
                if waits >= MAX_RATE_LIMIT_WAITS or delay is None or delay > MAX_RETRY_AFTER_SECONDS:
                    raise _sync_error(exc) from exc
                waits += 1
                wait(delay)
                continue
            except anthropic.APIStatusError as exc:
                raise _sync_error(exc) from exc
            except anthropic.APIConnectionError as exc:  # a timeout too (APITimeoutError)
                raise _transport_error(exc) from exc
            except TypeError as exc:  # params the SDK's create does not take
                raise SyncRequestError(
                    "invalid_request_error",
                    f"the params do not fit messages.create: {exc}",
                    endpoint_fault=True,
                ) from exc
            except ValueError as exc:  # the SDK refuses a long non-streaming call (a large max_tokens)
                raise SyncRequestError(
                    "invalid_request_error",
                    f"the SDK refused the synchronous call before sending it: {exc}",
                    endpoint_fault=True,
                ) from exc
            return message.model_dump(mode="json")

    return send


#: Statuses whose answer is not a refusal even with an error body: the call may have been processed.
_UNSETTLED_4XX = frozenset({408, 409})
#: Statuses that refuse for now: nothing was processed (rate limit, overloaded).
_REFUSED_FOR_NOW = frozenset({429, 529})


def _sync_error(exc: anthropic.APIStatusError) -> SyncRequestError:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    status = exc.status_code
    error_type = error.get("type") or ("api_error" if status >= 500 else "invalid_request_error")
    if status == 404 and not error:
        error_type = "not_found_error"
    refused = status in _REFUSED_FOR_NOW or (
        400 <= status < 500 and status not in _UNSETTLED_4XX and (bool(error) or status == 404)
    )
    return SyncRequestError(
        error_type,
        error.get("message") or f"HTTP {status} without the API's error body",
        exc.request_id,
        endpoint_fault=status in (401, 403, 404, 405),
        outcome_unknown=not refused,
    )


#: The HTTP client's errors raised before a request left: the connection was never made.
_NOT_SENT_ERRORS = frozenset({"ConnectError", "ConnectTimeout"})


def _transport_error(exc: anthropic.APIConnectionError) -> SyncRequestError:
    """A call that got no answer: refused before sending (connect error or timeout) is definite;
    anything after the request may have left (a read timeout, a reset) is an unknown outcome."""
    import anthropic

    cause = exc.__cause__
    timed_out = isinstance(exc, anthropic.APITimeoutError)
    error_type = "timeout_error" if timed_out else "api_error"
    # by name: the SDK's HTTP client is httpx or a fork of it (httpx2), whose classes are not httpx's
    if type(cause).__name__ in _NOT_SENT_ERRORS:
        what = "could not connect"
        unknown = False
    else:
        what = "timed out after sending" if timed_out else "lost its answer after sending"
        unknown = True
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return SyncRequestError(
        error_type,
        f"the synchronous call {what} ({detail})",
        endpoint_fault=True,
        outcome_unknown=unknown,
    )


def _each(shards: Iterable[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The round's fanout outputs as a list.

    A mapped task's output arrives as Airflow's lazy sequence: read by index up to its length, not
    iterated, because iterating it ends with a lookup past the last item, which Airflow's client logs
    as an error ("XCom not found") in every requeue task's log.
    """
    if shards is None:
        return []
    if isinstance(shards, Sequence):
        return [shards[index] for index in range(len(shards))]
    return list(shards)
