"""The emulator's settings: one frozen record shared by the app, the server and the command line."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_claude_batch.core.api.limits import (
    BATCH_WINDOW_SECONDS,
    MAX_BATCH_BYTES,
    MAX_REQUESTS_PER_BATCH,
    RESULTS_RETENTION_SECONDS,
)
from airflow_claude_batch.emulator.store.quotas import QUEUE_RETRY_SECONDS, TIER1_QUEUE_LIMIT, TIER1_RPM

# Enough that a batch of a few thousand requests ends within seconds.
DEFAULT_SPEED = 2000.0
# Idle keep-alive of client connections; longer than most clients' pool expiry, so a pooled connection
# is not closed under a client that is about to reuse it.
KEEP_ALIVE_SECONDS = 75
# Share of cache-eligible requests that read the cache: the batch docs say cache hits in batches are
# best effort, typically 30 % to 98 %; 0.8 sits inside that range.
DEFAULT_CACHE_HIT_RATE = 0.8


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves.

    :param host: interface to listen on; loopback unless a deployment needs more.
    :param port: port to listen on; ``0`` picks a free one (see ``EmulatorServer.base_url``).
    :param speed: requests processed per second in each batch.
    :param start_delay: seconds between a create and the start of processing.
    :param window_seconds: real seconds that stand for the API's 24-hour window; requests not processed
        by then end ``expired``.
    :param cancel_seconds: seconds a batch stays ``canceling`` after a cancel before it ends.
    :param error_rate: fraction of requests that end ``errored`` with a retryable error.
    :param api_key: the only key accepted; ``None`` accepts any non-empty key.
    :param seed: seed of every pseudo-random choice (result order, injected errors).
    :param max_batch_bytes: largest create body accepted, in bytes.
    :param max_requests: most requests accepted in one batch.
    :param retention_seconds: seconds after creation when a batch is archived and its results go.
    :param cache_hit_rate: share of requests that find a live cache entry and read it; the others write
        it again (the batch docs: best effort, typically 30-98 %). Which ones is decided by ``seed``.
    :param queue_limit: most requests waiting or in progress across a workspace (API key); a create
        that would exceed it is refused with 429. Default: the API's tier 1 (100,000); ``None``: no limit.
    :param queue_retry_after: seconds the ``retry-after`` header of a queue refusal asks for (sent in
        whole seconds, at least 1).
    :param rpm_limit: most calls per minute to the batch endpoints together, per workspace (polling
        included); more are refused with 429 and ``retry-after``. Default: the API's tier 1 (50);
        ``None``: no limit.
    :param models_file: a models file laid over the shipped catalogue (see ``batch.models``); ``None``
        uses ``CLAUDE_BATCH_MODELS_FILE`` when set.
    """

    host: str = "127.0.0.1"
    port: int = 0
    speed: float = DEFAULT_SPEED
    start_delay: float = 0.0
    window_seconds: float = float(BATCH_WINDOW_SECONDS)
    cancel_seconds: float = 0.5
    error_rate: float = 0.0
    api_key: str | None = None
    seed: int = 0
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_requests: int = MAX_REQUESTS_PER_BATCH
    retention_seconds: float = float(RESULTS_RETENTION_SECONDS)
    cache_hit_rate: float = DEFAULT_CACHE_HIT_RATE
    queue_limit: int | None = TIER1_QUEUE_LIMIT
    queue_retry_after: float = QUEUE_RETRY_SECONDS
    rpm_limit: int | None = TIER1_RPM
    models_file: str | None = None

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be above 0 requests per second, got {self.speed}")
        if self.start_delay < 0 or self.cancel_seconds < 0:
            raise ValueError("start_delay and cancel_seconds must be 0 or more seconds")
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be above 0, got {self.window_seconds}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be a fraction between 0 and 1, got {self.error_rate}")
        if not 0.0 <= self.cache_hit_rate <= 1.0:
            raise ValueError(f"cache_hit_rate must be a fraction between 0 and 1, got {self.cache_hit_rate}")
        for name in ("queue_limit", "rpm_limit"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be 1 or more, or None for no limit, got {limit}")
        if self.queue_retry_after <= 0:
            raise ValueError(f"queue_retry_after must be above 0 seconds, got {self.queue_retry_after}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty key, or None to accept any key")
