"""The outcome files of one shard, written whole and published together.

A fanout writes one file per outcome (``outcomes.ROW_OUTCOMES``) under ``round-r/shard-nnnnn/``. They are
published only once the whole stream was read and reconciled, so a failed or retried fanout never
leaves a half file or a line twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from typing import IO, Any

import orjson

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer

_WRITE_BUFFER_BYTES = 1 << 20


class OutcomeFiles:
    """The outcome files of one shard, written through temporary writers and published together.

    Use as a context manager: on a clean exit every file is published whole (including empty ones, so
    their presence says the fanout finished); on an exception none is.
    """

    def __init__(self, paths: Mapping[str, StoragePath]) -> None:
        self._paths = dict(paths)
        self._stack = ExitStack()
        self._handles: dict[str, IO[bytes]] = {}
        self._buffers: dict[str, bytearray] = {}

    def __enter__(self) -> OutcomeFiles:
        with ExitStack() as stack:
            for outcome, path in self._paths.items():
                self._handles[outcome] = stack.enter_context(atomic_writer(path))
                self._buffers[outcome] = bytearray()
            self._stack = stack.pop_all()
        return self

    def write(self, outcome: str, row: Mapping[str, Any]) -> None:
        buffer = self._buffers[outcome]
        buffer += orjson.dumps(row)
        buffer += b"\n"
        if len(buffer) >= _WRITE_BUFFER_BYTES:
            self._handles[outcome].write(buffer)
            buffer.clear()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is None:
            try:
                for outcome, buffer in self._buffers.items():
                    if buffer:
                        self._handles[outcome].write(buffer)
            except BaseException as flush_error:
                # let every writer discard its temporary file, then report the flush failure
                self._stack.__exit__(type(flush_error), flush_error, flush_error.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, tb)


def shard_outcome_paths(folder: RunFolder, round_index: int, shard_index: int) -> dict[str, StoragePath]:
    """Return ``{outcome: path}`` of the shard's outcome files."""
    return {outcome: folder.shard_outcome(round_index, shard_index, outcome) for outcome in ROW_OUTCOMES}
