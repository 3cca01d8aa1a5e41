"""Synthetic result lines and shard files for the core tests of the fanout, requeue and ledger."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.core.results.answer_parsing import OutputValidator
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, write_json

MODEL = "claude-sonnet-4-6"
PRICES = PriceTable.load()


def request(custom_id: str, prompt: str = "hello") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]},
    }


def write_shard(folder: RunFolder, round_index: int, shard_index: int, ids: Iterable[str]) -> ShardDescriptor:
    """Write a requests file the way the builder does and return its descriptor."""
    path = folder.shard_requests(round_index, shard_index)
    lines = [orjson.dumps(request(custom_id)) + b"\n" for custom_id in ids]
    with atomic_writer(path) as out:
        out.write(b"".join(lines))
    return ShardDescriptor(
        run_uri=str(folder.root),
        round=round_index,
        index=shard_index,
        uri=str(path),
        request_count=len(lines),
        body_bytes=sum(len(line) for line in lines),
    )


def write_shard_list(folder: RunFolder, round_index: int, shards: list[ShardDescriptor]) -> None:
    write_json(folder.shard_list(round_index), [s.to_dict() for s in shards])


def usage(
    input_tokens: int = 100,
    output_tokens: int = 10,
    *,
    cache_write_1h: int | None = None,
    cache_read: int | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_write_1h is not None:
        value["cache_creation_input_tokens"] = cache_write_1h
        value["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": cache_write_1h,
        }
    if cache_read is not None:
        value["cache_read_input_tokens"] = cache_read
    return value


def succeeded(
    custom_id: str, text: str = "ok", usage_: Mapping[str, Any] | None = None, stop_reason: str = "end_turn"
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "usage": dict(usage_ or usage()),
            },
        },
    }


def errored(custom_id: str, error_type: str = "overloaded_error", message: str = "busy") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": "req_1",
            },
        },
    }


def expired(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "result": {"type": "expired"}}


def canceled(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "result": {"type": "canceled"}}


def read_rows(path: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(str(path)).read_bytes().splitlines() if line.strip()]


def fanned_out_shard(
    folder: RunFolder,
    index: int,
    lines: list[dict[str, Any]],
    *,
    round_index: int = 0,
    cancel_initiated_at: str | None = None,
    ids: Iterable[str] | None = None,
    validator: OutputValidator | None = None,
) -> ShardDescriptor:
    """Write a shard of the lines' ids (or ``ids``) and fan the lines out into its outcome files."""
    if ids is None:
        ids = [line["custom_id"] for line in lines]
    shard = write_shard(folder, round_index, index, ids)
    fan_out_shard(
        folder=folder,
        round_index=round_index,
        shard_index=index,
        requests_path=folder.shard_requests(round_index, index),
        open_results=lambda: iter(lines),
        prices=PRICES,
        cancel_initiated_at=cancel_initiated_at,
        validator=validator,
    )
    return shard
