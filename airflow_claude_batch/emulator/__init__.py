"""A local stand-in for the Message Batches API: same paths, shapes, errors and limits, no key needed.

Start it in-process with :class:`EmulatorServer` (tests, the demo, benchmarks) or from the shell with
``claude-batch-emulator --port 8787``. It listens on loopback only unless told otherwise.
"""

from __future__ import annotations

from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.emulator.server import EmulatorServer
from airflow_claude_batch.emulator.service.app import create_app

__all__ = ["EmulatorConfig", "EmulatorServer", "create_app"]
