"""The prompt cache: uses in processing order, a hit rate decided by the seed, lifetimes apart."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.emulator import EmulatorConfig, EmulatorServer
from airflow_claude_batch.emulator.store.digests import digest_request
from airflow_claude_batch.emulator.store.prompt_cache import PromptCache
from tests.emulator.builders import request, requests

SYSTEM_TEXT = "You answer questions about a long manual.\n" + "m" * 20_000


def _system(ttl: str | None = None) -> list[dict]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": SYSTEM_TEXT, "cache_control": control}]


def _digest(ttl: str | None = None):
    params = request("a", system=_system(ttl))["params"]
    return digest_request("a", params, load_models().get(params["model"]))


def test_an_entry_serves_only_requests_processed_after_its_write():
    cache = PromptCache(hit_rate=1.0)
    digest = _digest()
    assert cache.use("ws", digest, 100.0, 0.0) == "write"
    # Processed earlier than the write (another batch, rendered later): nothing was cached yet.
    assert cache.use("ws", digest, 50.0, 0.0) == "write"
    assert cache.use("ws", digest, 100.0 + 299.0, 0.0) == "read"
    # Each use refreshes the 5-minute lifetime; a gap longer than it writes again.
    assert cache.use("ws", digest, 399.0 + 301.0, 0.0) == "write"


def test_lifetimes_and_workspaces_are_kept_apart():
    cache = PromptCache(hit_rate=1.0)
    short, long = _digest(), _digest("1h")
    assert cache.use("ws", short, 0.0, 0.0) == "write"
    assert cache.use("ws", long, 1.0, 0.0) == "write"  # a 5-minute entry does not serve a 1-hour request
    assert cache.use("ws", long, 1801.0, 0.0) == "read"
    assert cache.use("other", short, 2.0, 0.0) == "write"


def test_the_hit_rate_decides_which_live_entries_are_read():
    cache = PromptCache(hit_rate=0.8)
    digest = _digest()
    cache.use("ws", digest, 0.0, 0.0)
    assert cache.use("ws", digest, 1.0, 0.79) == "read"
    assert cache.use("ws", digest, 2.0, 0.81) == "write"


def _usages(client: anthropic.Anthropic, clock, batch_requests: list[dict]) -> list:
    batch = client.messages.batches.create(requests=batch_requests)
    clock.advance(len(batch_requests) + 3.0)
    return [result.result.message.usage for result in client.messages.batches.results(batch.id)]


def test_a_request_never_reads_an_entry_written_after_it(clock):
    config = EmulatorConfig(api_key="k", speed=1.0, start_delay=0.0, cache_hit_rate=1.0, rpm_limit=None)
    with EmulatorServer(config, clock=clock) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
        # Both batches run at once: the early one's requests at 1, 2 and 3 s, the late one's at 1.5 s.
        early = client.messages.batches.create(requests=requests(3, "e", system=_system()))
        clock.advance(0.5)
        late = client.messages.batches.create(requests=requests(1, "l", system=_system()))
        clock.advance(10.0)
        # The late batch is rendered first; the early one's first request must not read its entry.
        late_usages = [r.result.message.usage for r in client.messages.batches.results(late.id)]
        early_usages = [r.result.message.usage for r in client.messages.batches.results(early.id)]
        assert [bool(u.cache_creation_input_tokens) for u in late_usages] == [True]
        assert sorted(bool(u.cache_creation_input_tokens) for u in early_usages) == [False, False, True]
        assert sum(bool(u.cache_read_input_tokens) for u in early_usages) == 2


@pytest.mark.parametrize("seed", [1, 2])
def test_the_default_hit_rate_reads_most_but_not_all_and_repeats_with_the_seed(clock, seed):
    counts = []
    for _ in range(2):
        with EmulatorServer(
            EmulatorConfig(api_key="k", speed=1000.0, seed=seed, rpm_limit=None), clock=clock
        ) as server:
            client = anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)
            usages = _usages(client, clock, requests(200, system=_system()))
            counts.append(sorted(u.cache_read_input_tokens > 0 for u in usages).count(True))
    assert counts[0] == counts[1]
    assert 0.6 * 199 < counts[0] < 199
