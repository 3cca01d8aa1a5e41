"""The batch store: creation with the API's checks, processing over time, and pre-rendered results.

Processing is computed from the clock on each read, so no background thread is needed: a batch's
requests are processed one after another, in a seeded shuffled order, at ``speed`` requests per second
after ``start_delay``. When a read finds the batch past its end, the result lines are rendered once, as
bytes, and the per-request digests are dropped.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.emulator.checks.errors import ApiError, not_found, too_large
from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.emulator.ids import derived_id, sortable_id
from airflow_claude_batch.emulator.store.create_body import digest_create_body
from airflow_claude_batch.emulator.store.digests import RequestDigest, message
from airflow_claude_batch.emulator.store.faults import BatchFaults
from airflow_claude_batch.emulator.store.prompt_cache import PromptCache
from airflow_claude_batch.emulator.store.quotas import check_queue

Clock = Callable[[], float]
RESULTS_PATH = "/v1/messages/batches/{}/results"
OUTCOMES = ("succeeded", "errored", "canceled", "expired")
RETRYABLE_ERROR_TYPES = ("overloaded_error", "api_error")
_CANCELED_LINE = {"type": "canceled"}
_EXPIRED_LINE = {"type": "expired"}


def rfc3339(timestamp: float | None) -> str | None:
    """Format a POSIX timestamp as the API does (``2024-08-20T18:37:24.100435Z``)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class Batch:
    """One batch and its processing schedule (mutable: it ends, is cancelled, is rendered)."""

    id: str
    ordinal: int
    key_id: str
    created_at: float
    expires_at: float
    start_at: float
    duration: float
    digests: list[RequestDigest] | None
    order: list[int] | None
    faults: BatchFaults
    total: int
    cancel_initiated_at: float | None = None
    ended_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    results: bytes = b""

    def end_time(self, cancel_seconds: float) -> float:
        """Return when processing ends (or ended), as scheduled now."""
        natural = min(self.start_at + self.duration, self.expires_at)
        if self.cancel_initiated_at is not None:
            return min(natural, self.cancel_initiated_at + cancel_seconds)
        return natural


def workspace_of(api_key: str) -> str:
    """Return the workspace of a key: batches and the cache are per key; a hash, never the key itself."""
    return hashlib.blake2b(api_key.encode(), digest_size=8).hexdigest()


def unit(*parts: object) -> float:
    """Return a number in [0, 1) that is the same whenever ``parts`` are."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Engine:
    """Every batch the emulator holds, each visible only to its workspace, and the prompt cache.

    :param config: the emulator's settings.
    :param clock: returns the current time as POSIX seconds; tests pass a manual clock.
    """

    def __init__(self, config: EmulatorConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.catalogue = load_models(config.models_file)
        self.cache = PromptCache(config.cache_hit_rate)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every batch and the prompt cache."""
        with self._lock:
            self._batches: dict[str, Batch] = {}
            self._ids: dict[str, list[str]] = {}  # per workspace, sorted: ids sort in creation order
            self.cache.reset()
            self._ordinal = 0
            self._last_millis = 0
            self._sequence = 0

    # -- create -----------------------------------------------------------------------------------

    def create(
        self,
        body: bytes | bytearray,
        api_key: str,
        base_url: str,
        take_faults: Callable[[], BatchFaults],
        version: str = "2023-06-01",
        betas: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Check a create body as the API does, store the batch and return its object.

        :param body: the raw request body; a ``bytearray`` is emptied once parsed, to free its memory.
        :param api_key: the caller's key (batches and the prompt cache are per key).
        :param base_url: the server's base URL, for ``results_url``.
        :param take_faults: returns the outcome faults armed for the next batch; called only once the
            body is valid, so a rejected create uses up no fault.
        :param version: the ``anthropic-version`` of the create; its requests are checked under it.
        :param betas: the create's ``anthropic-beta`` values (the output-300k beta lifts ``max_tokens``).
        :raises ApiError: 413 for too many requests or bytes, 429 over the queue limit, 400 for any
            other invalid body.
        """
        if len(body) > self.config.max_batch_bytes:
            raise too_large(len(body), self.config.max_batch_bytes)
        digests = digest_create_body(body, version, self.catalogue, self.config.max_requests, betas)
        workspace = workspace_of(api_key)
        with self._lock:
            check_queue(
                self.config.queue_limit,
                self._waiting(workspace),
                len(digests),
                self.config.queue_retry_after,
            )
            batch = self._store(digests, workspace, take_faults())
            return self._view(batch, base_url)

    def _waiting(self, workspace: str) -> int:
        waiting = 0
        for batch in self._batches.values():
            if batch.key_id == workspace and self._advance(batch).ended_at is None:
                waiting += batch.total
        return waiting

    def _store(self, digests: list[RequestDigest], workspace: str, faults: BatchFaults) -> Batch:
        now = self.clock()
        ordinal = self._ordinal
        self._ordinal += 1
        total = len(digests)
        if faults.processing_seconds is not None:
            start_at, duration = now, faults.processing_seconds
        else:
            start_at, duration = now + self.config.start_delay, total / self.config.speed
        order = list(range(total))
        random.Random(f"{self.config.seed}:{ordinal}:order").shuffle(order)
        batch = Batch(
            id=self._new_id(now),
            ordinal=ordinal,
            key_id=workspace,
            created_at=now,
            expires_at=now + self.config.window_seconds,
            start_at=start_at,
            duration=duration,
            digests=digests,
            order=order,
            faults=faults,
            total=total,
        )
        self._batches[batch.id] = batch
        self._ids.setdefault(workspace, []).append(batch.id)
        return batch

    def _new_id(self, now: float) -> str:
        millis = max(int(now * 1000), self._last_millis)
        self._sequence = self._sequence + 1 if millis == self._last_millis else 0
        self._last_millis = millis
        return sortable_id("msgbatch_", millis, self._sequence)

    # -- reads and changes ------------------------------------------------------------------------

    # Every read and change takes the caller's workspace: another workspace's batch is not found.

    def retrieve(self, batch_id: str, base_url: str, workspace: str) -> dict[str, Any]:
        """Return the batch object, processing it up to now first."""
        with self._lock:
            return self._view(self._advanced(batch_id, workspace), base_url)

    def list_batches(
        self,
        base_url: str,
        workspace: str,
        *,
        limit: int = 20,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> dict[str, Any]:
        """Return one page of the workspace's batches, newest first, as ``GET /v1/messages/batches``."""
        with self._lock:
            ids = self._ids.get(workspace, [])
            if before_id is not None:
                # The page of newer batches right before the cursor, still listed newest first.
                newer = ids[bisect_right(ids, before_id) :]
                page_ids = list(reversed(newer[:limit]))
                has_more = len(newer) > limit
            else:
                older = ids[: bisect_left(ids, after_id)] if after_id is not None else ids
                page_ids = list(reversed(older[-limit:])) if limit else []
                has_more = len(older) > limit
            data = [self._view(self._advance(self._batches[batch_id]), base_url) for batch_id in page_ids]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": page_ids[0] if page_ids else None,
            "last_id": page_ids[-1] if page_ids else None,
        }

    def cancel(self, batch_id: str, base_url: str, workspace: str) -> dict[str, Any]:
        """Start cancelling a batch; a batch already cancelling or ended is returned as it is."""
        with self._lock:
            batch = self._advanced(batch_id, workspace)
            if batch.ended_at is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = self.clock()
                self._advance(batch)
            return self._view(batch, base_url)

    def delete(self, batch_id: str, workspace: str) -> dict[str, Any]:
        """Delete an ended batch; a batch still processing cannot be deleted (400)."""
        with self._lock:
            batch = self._advanced(batch_id, workspace)
            if batch.ended_at is None:
                raise ApiError(
                    "invalid_request_error",
                    f"Message batch {batch_id} cannot be deleted while it is processing; cancel it, "
                    "then delete it once it has ended",
                )
            del self._batches[batch_id]
            ids = self._ids[workspace]
            ids.pop(bisect_left(ids, batch_id))
            return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str, workspace: str, lag_seconds: float = 0.0) -> bytes:
        """Return the batch's JSONL results, one line per request, in arbitrary order.

        :param lag_seconds: the results are not found until this long after the batch ended (a fault).
        :raises ApiError: 404 for an unknown or archived batch, or for results that lag; 400 while
            it is processing.
        """
        with self._lock:
            batch = self._advanced(batch_id, workspace)
            if batch.ended_at is None:
                raise ApiError(
                    "invalid_request_error",
                    f"Message batch {batch_id} has not ended yet (processing_status "
                    f"{self._status(batch)}); results are available once processing_status is 'ended'",
                )
            if self._archived_at(batch) is not None:
                raise ApiError("not_found_error", f"results of message_batch {batch_id} were archived")
            if self.clock() < batch.ended_at + lag_seconds:
                raise ApiError("not_found_error", f"results of message_batch {batch_id} not found")
            return batch.results

    # -- processing -------------------------------------------------------------------------------

    def _advanced(self, batch_id: str, workspace: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.key_id != workspace:
            raise not_found(batch_id)
        return self._advance(batch)

    def _advance(self, batch: Batch) -> Batch:
        if batch.ended_at is None:
            end = batch.end_time(self.config.cancel_seconds)
            if self.clock() >= end:
                self._finish(batch, end)
        return batch

    def _finish(self, batch: Batch, end: float) -> None:
        digests, order = batch.digests, batch.order
        if digests is None or order is None:
            raise RuntimeError(f"batch {batch.id} was already finished")
        doomed = self._chosen(batch, batch.faults.expire_fraction, "expire")
        failing = self._chosen(batch, batch.faults.error_fraction, "error")
        counts = dict.fromkeys(OUTCOMES, 0)
        lines = []
        step = batch.duration / batch.total
        for position, index in enumerate(order):
            digest = digests[index]
            done_at = batch.start_at + (position + 1) * step
            outcome, result = self._outcome(batch, digest, index, done_at, doomed, failing)
            counts[outcome] += 1
            lines.append(orjson.dumps({"custom_id": digest.custom_id, "result": result}))
        lines.append(b"")
        batch.results = b"\n".join(lines)
        batch.counts = counts
        batch.ended_at = end
        batch.digests = None
        batch.order = None

    def _chosen(self, batch: Batch, fraction: float, purpose: str) -> frozenset[int]:
        count = round(fraction * batch.total)
        if not count:
            return frozenset()
        chooser = random.Random(f"{self.config.seed}:{batch.ordinal}:{purpose}")
        return frozenset(chooser.sample(range(batch.total), count))

    def _outcome(
        self,
        batch: Batch,
        digest: RequestDigest,
        index: int,
        done_at: float,
        doomed: frozenset[int],
        failing: frozenset[int],
    ) -> tuple[str, dict[str, Any]]:
        if index in doomed:
            return "expired", _EXPIRED_LINE
        if batch.cancel_initiated_at is not None and done_at > batch.cancel_initiated_at:
            return "canceled", _CANCELED_LINE
        if done_at > batch.expires_at:
            return "expired", _EXPIRED_LINE
        if digest.problem is not None:
            return "errored", self._errored(batch, digest, digest.problem.error_type, digest.problem.message)
        if index in failing:
            return "errored", self._errored(batch, digest, batch.faults.error_type, "Injected error")
        draw = unit(self.config.seed, batch.ordinal, digest.custom_id) if self.config.error_rate else 1.0
        if draw < self.config.error_rate:
            error_type = RETRYABLE_ERROR_TYPES[int(draw * 1e9) % 2]
            message = "Overloaded" if error_type == "overloaded_error" else "Internal server error"
            return "errored", self._errored(batch, digest, error_type, message)
        return "succeeded", self._succeeded(batch, digest, done_at)

    @staticmethod
    def _errored(batch: Batch, digest: RequestDigest, error_type: str, message: str) -> dict[str, Any]:
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": derived_id("req_", batch.id, digest.custom_id),
            },
        }

    def _succeeded(self, batch: Batch, digest: RequestDigest, done_at: float) -> dict[str, Any]:
        cacheable = digest.cache_key is not None
        draw = unit(self.config.seed, batch.ordinal, digest.custom_id, "cache") if cacheable else 1.0
        event = self.cache.use(batch.key_id, digest, done_at, draw)
        answer = message(derived_id("msg_", batch.id, digest.custom_id), digest, event, "batch")
        return {"type": "succeeded", "message": answer}

    # -- rendering --------------------------------------------------------------------------------

    def _status(self, batch: Batch) -> str:
        if batch.ended_at is not None:
            return "ended"
        return "canceling" if batch.cancel_initiated_at is not None else "in_progress"

    def _archived_at(self, batch: Batch) -> float | None:
        archived_at = batch.created_at + self.config.retention_seconds
        return archived_at if self.clock() >= archived_at else None

    def _view(self, batch: Batch, base_url: str) -> dict[str, Any]:
        ended = batch.ended_at is not None
        counts = batch.counts if ended else {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": self._status(batch),
            "request_counts": {"processing": 0 if ended else batch.total, **counts},
            "ended_at": rfc3339(batch.ended_at),
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.expires_at),
            "archived_at": rfc3339(self._archived_at(batch)),
            "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
            "results_url": f"{base_url.rstrip('/')}/v1/messages/batches/{batch.id}/results"
            if ended
            else None,
        }
