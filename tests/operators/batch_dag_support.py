"""Tasks for the operator tests' small DAGs: write a round's shard, submit it for real and wait.

These stand in for the build, submit and wait steps so that the tests of the fanout, requeue and
report operators depend only on the hook and the emulator.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, write_json
from airflow_claude_batch.core.submit.state import SubmitState, format_utc, utc_now, write_state
from airflow_claude_batch.hooks.claude import ClaudeBatchHook

SYSTEM = "Classify the ticket.\nLabels: billing, bug, account"
TEXTS = ("I was charged twice on my invoice", "The app crashes on start", "I cannot login to my account")


def request(number: int) -> dict[str, Any]:
    return {
        "custom_id": f"t-{number:04d}",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": TEXTS[number % len(TEXTS)]}],
        },
    }


def write_round_0(storage: str, context: Any, records: int) -> list[dict[str, Any]]:
    """Write one shard of ``records`` requests, ``round-0/shards.json`` and ``estimate.json``."""
    folder = RunFolder.for_run(
        ObjectStoragePath(storage), context["ti"].dag_id, context["run_id"], "claude_batch"
    )
    lines = [orjson.dumps(request(number)) + b"\n" for number in range(records)]
    path = folder.shard_requests(0, 0)
    with atomic_writer(path) as out:
        out.write(b"".join(lines))
    shard = ShardDescriptor(
        run_uri=str(folder.root),
        round=0,
        index=0,
        uri=str(path),
        request_count=records,
        body_bytes=len(b'{"requests":[]}') + sum(len(line) - 1 for line in lines) + records - 1,
    )
    write_json(folder.shard_list(0), [shard.to_dict()])
    write_json(folder.estimate, {"records": records, "estimated_cost_usd_upper": 0.01})
    return [shard.to_dict()]


def submit_and_wait(shard: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Create the shard's batch, record it in the shard's state file, and wait until it ended."""
    descriptor = ShardDescriptor.from_dict(shard)
    folder = RunFolder(ObjectStoragePath(descriptor.run_uri))
    hook = ClaudeBatchHook()
    path = folder.shard_requests(descriptor.round, descriptor.index)
    batch = hook.create_batch_from_file(path, descriptor.request_count, descriptor.body_bytes)
    state = SubmitState(
        shard_uri=descriptor.uri,
        fingerprint="0" * 64,
        request_count=descriptor.request_count,
        body_bytes=descriptor.body_bytes,
        intent_at=format_utc(utc_now()),
        status="submitted",
        batch_id=batch["id"],
    )
    write_state(folder.shard_state(descriptor.round, descriptor.index), state)
    deadline = time.monotonic() + timeout
    while batch["processing_status"] != "ended":
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch['id']} did not end within {timeout} s")
        time.sleep(0.1)
        batch = hook.get_batch(batch["id"])
    return descriptor.evolve(batch_id=batch["id"], processing_status="ended").to_dict()
