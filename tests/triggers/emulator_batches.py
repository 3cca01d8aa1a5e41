"""Batches made in the emulator with the SDK directly, as a user's submit step would, for wait tests."""

from __future__ import annotations

import time

import anthropic


def create_batch(emulator, requests: int = 3) -> str:
    """Create a batch of ``requests`` small requests in the emulator; return its id."""
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"req-{index}",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"Classify ticket {index}"}],
                },
            }
            for index in range(requests)
        ]
    )
    return batch.id


def wait_until_ended(emulator, batch_id: str, timeout: float = 30.0) -> None:
    """Poll the emulator (not the code under test) until the batch ended."""
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key)
    deadline = time.monotonic() + timeout
    while client.messages.batches.retrieve(batch_id).processing_status != "ended":
        assert time.monotonic() < deadline, f"batch {batch_id} did not end within {timeout} s"
        time.sleep(0.1)
