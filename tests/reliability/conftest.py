"""Fixtures of the reliability suite: an emulator with transport faults, runs, and the suite's figures.

The figures (faults injected, kill points, bad inputs tried, batches double-submitted, lines lost) are
counted by the tests as they run and printed at the end of the session; with
``RELIABILITY_FIGURES=path.json`` they are also written to that file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.emulator import EmulatorServer
from tests.fixtures.emulator import DEFAULT_CONN_ENV, FAST_CONFIG, EmulatorHandle
from tests.reliability.harness import RunHarness, records, write_jsonl
from tests.reliability.transport_faults import TransportFaults

FIGURES: Counter[str] = Counter()
#: The Claude connection's timeout in the fault suite, in seconds.
FAULT_SUITE_TIMEOUT = 10.0


class Figures:
    """What the suite tried and what it found, added up over the session."""

    def add(self, name: str, amount: int = 1) -> None:
        FIGURES[name] += amount

    def double_submits(self, created: int, expected: int) -> None:
        """Count batches created beyond one per shard (and let the test assert it is 0)."""
        FIGURES["batches_double_submitted"] += max(created - expected, 0)
        FIGURES["batches_checked"] += expected

    def lines(self, lost: int, doubled: int, checked: int) -> None:
        FIGURES["lines_lost"] += lost
        FIGURES["lines_doubled"] += doubled
        FIGURES["lines_checked"] += checked


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")


@dataclass(frozen=True)
class FaultyEmulator:
    """The emulator behind :class:`TransportFaults`: API faults (``faults``) and transport faults
    (``transport.arm``), both counted.

    :param handle: the emulator's test handle (``stats``, ``faults``, ``reset``...).
    :param transport: the transport faults in front of it.
    """

    handle: EmulatorHandle
    transport: TransportFaults

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    @property
    def api_key(self) -> str:
        return self.handle.api_key

    def stats(self) -> dict[str, Any]:
        return self.handle.stats()

    def faults(self, spec: dict[str, Any]) -> None:
        self.handle.faults(spec)

    @property
    def faults_fired(self) -> int:
        """API faults and transport faults fired since the last reset."""
        return int(self.stats()["faults_fired"]) + self.transport.total_fired


@pytest.fixture(scope="session")
def _faulty_server() -> Iterator[tuple[EmulatorServer, TransportFaults]]:
    server = EmulatorServer(FAST_CONFIG)
    transport = TransportFaults(server.app)
    server.app = transport  # served in place of the bare app
    server.start()
    try:
        yield server, transport
    finally:
        server.stop()


@pytest.fixture
def faulty_emulator(
    _faulty_server: tuple[EmulatorServer, TransportFaults], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultyEmulator]:
    """A freshly reset emulator with transport faults, set as the default Claude connection."""
    server, transport = _faulty_server
    handle = EmulatorHandle(base_url=server.base_url)
    handle.reset()
    transport.reset()
    # Faults here delay answers by 2 s at most. A create whose answer is lost without a batch (a refusal
    # cut off on the wire) may not be sent again before the timeout and the margin have passed: 10 s
    # keeps that wait short (the default is 600 s).
    connection = {**json.loads(handle.connection_json), "extra": {"timeout": FAULT_SUITE_TIMEOUT}}
    monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps(connection))
    try:
        yield FaultyEmulator(handle, transport)
    finally:
        transport.reset()
        handle.client.close()


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., RunHarness]:
    """Return ``make_run(count=8, **harness_kwargs)``: a run over ``count`` fresh records in ``tmp_path``."""

    def make(count: int = 8, *, name: str = "run", **kwargs: Any) -> RunHarness:
        source = write_jsonl(tmp_path / name / "in" / "tickets.jsonl", records(count))
        kwargs.setdefault("build_kwargs", {"max_requests_per_shard": max(count // 2, 1)})
        return RunHarness(storage=tmp_path / name / "storage", source=f"file://{source}", **kwargs)

    return make
