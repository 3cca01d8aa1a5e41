"""Fixtures of the emulator's own tests: a manual clock and a server that runs on it."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from airflow_claude_batch.emulator import EmulatorConfig, EmulatorServer

CLOCKED_KEY = "test-key-clocked"


class ManualClock:
    """A clock that moves only when told, so processing over time is tested without sleeping."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock."""
    return ManualClock()


# One request per second after a 2 s start delay; a 100 s window; cancels take 5 s; every live cache
# entry is read (the hit rate has tests of its own).
CLOCKED_CONFIG = EmulatorConfig(
    api_key=CLOCKED_KEY,
    speed=1.0,
    start_delay=2.0,
    window_seconds=100.0,
    cancel_seconds=5.0,
    seed=7,
    cache_hit_rate=1.0,
    rpm_limit=None,  # the clock stands still: a minute's budget would never refill
    queue_limit=None,
)


@pytest.fixture
def clocked_server(clock: ManualClock) -> Iterator[EmulatorServer]:
    """An emulator on the manual clock (see ``CLOCKED_CONFIG``)."""
    with EmulatorServer(CLOCKED_CONFIG, clock=clock) as server:
        yield server


@pytest.fixture
def clocked_client(clocked_server: EmulatorServer) -> anthropic.Anthropic:
    """An SDK client of the clocked emulator, without retries so errors show as they are."""
    return anthropic.Anthropic(base_url=clocked_server.base_url, api_key=CLOCKED_KEY, max_retries=0)


@pytest.fixture
def sdk(emulator) -> anthropic.Anthropic:
    """An SDK client of the session's emulator, without retries so errors show as they are."""
    return anthropic.Anthropic(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
