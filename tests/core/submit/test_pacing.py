"""Pacing creates: when a refused create tries again, and which lower shard a shard waits behind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.pacing import (
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    STALE_AFTER,
    CreateThrottled,
    ShardLine,
    next_try,
    refused_for_now,
)
from airflow_claude_batch.core.submit.state import SubmitState, format_utc, parse_utc, write_state

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)


def intent(uri: str = "s") -> SubmitState:
    return SubmitState(
        shard_uri=uri,
        fingerprint="0" * 64,
        request_count=3,
        body_bytes=99,
        intent_at=format_utc(NOW),
        status="intent",
        marker_id="acb-marker-x",
        settle_at=format_utc(NOW + timedelta(minutes=20)),
    )


def test_retry_after_is_obeyed_up_to_a_cap() -> None:
    assert next_try(NOW, 12.0, 1, lambda: 0.5) == NOW + timedelta(seconds=12)
    assert next_try(NOW, 10 * 3600.0, 1, lambda: 0.5) == NOW + RETRY_AFTER_CAP


def test_without_retry_after_the_backoff_doubles_is_jittered_and_capped() -> None:
    assert next_try(NOW, None, 1, lambda: 0.999) - NOW <= timedelta(seconds=30)
    assert next_try(NOW, None, 1, lambda: 0.0) - NOW == timedelta(seconds=22.5)
    assert next_try(NOW, None, 3, lambda: 0.999) - NOW <= timedelta(seconds=120)
    assert next_try(NOW, None, 3, lambda: 0.999) - NOW > timedelta(seconds=119)
    assert next_try(NOW, None, 50, lambda: 0.999) - NOW <= BACKOFF_CAP


def test_a_refusal_closes_the_intent_settled_with_its_next_try_and_keeps_its_marker() -> None:
    refused = refused_for_now(intent(), CreateThrottled("HTTP 429 rate_limit_error: queue", 5.0), NOW)
    assert (refused.status, refused.refusals, refused.failure) == (
        "failed",
        1,
        "HTTP 429 rate_limit_error: queue",
    )
    assert refused.settle_at == format_utc(NOW)
    assert refused.retry_at == format_utc(NOW + timedelta(seconds=5))
    assert refused.marker_id == "acb-marker-x"


def test_the_line_names_the_lowest_shard_waiting_and_skips_the_rest(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run", "pipe")
    folder.round_dir(0).mkdir(parents=True)
    waiting = refused_for_now(intent("s1"), CreateThrottled("HTTP 429 rate_limit_error", 60.0), NOW)
    stopped = refused_for_now(
        intent("s2"), CreateThrottled("HTTP 529 overloaded_error", 1.0), NOW - STALE_AFTER
    )
    write_state(folder.shard_state(0, 1), waiting)  # shard 0 has not started: it blocks nobody
    write_state(folder.shard_state(0, 2), stopped)
    write_state(folder.shard_state(0, 3), waiting)
    ahead = ShardLine(folder, 0, 4).ahead(NOW)
    assert ahead is not None
    assert (ahead.index, ahead.retry_at) == (1, parse_utc(str(waiting.retry_at)))
    assert ShardLine(folder, 0, 1).ahead(NOW) is None
    assert ShardLine(folder, 0, 3).ahead(NOW + timedelta(seconds=60) + STALE_AFTER) is None
    assert ShardLine(folder, 1, 4).ahead(NOW) is None, "another round is another line"
