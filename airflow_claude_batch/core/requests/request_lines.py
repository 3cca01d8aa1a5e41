"""A shard's requests file read line by line, each line with its ``custom_id``.

The fanout, the requeue and the ledger read shard files through this module; memory holds one line at
a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson

from airflow_claude_batch.core.run.storage import StoragePath
from airflow_claude_batch.exceptions import InputError

# Shard lines are written SDK-encoded, with custom_id first; ids are ASCII without escapes, so the id
# can be taken from the line's start without decoding the (possibly large) params.
_LEADING_CUSTOM_ID = re.compile(rb'^\s*\{\s*"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


def custom_id_of_line(line: bytes) -> str:
    """Return the ``custom_id`` of one encoded request line.

    :param line: one line of a shard's requests file.
    :raises InputError: when the line holds no ``custom_id`` string.
    """
    match = _LEADING_CUSTOM_ID.match(line)
    if match:
        return match.group(1).decode("ascii")
    custom_id = orjson.loads(line).get("custom_id")
    if not isinstance(custom_id, str):
        raise InputError(f"a request line has no custom_id string: {line[:80]!r}...; rebuild the shard")
    return custom_id


def iter_request_lines(requests_path: StoragePath) -> Iterator[tuple[str, bytes]]:
    """Yield ``(custom_id, line)`` for each request of a shard file, one line in memory at a time.

    :param requests_path: a shard's ``*.requests.jsonl``; lines keep their trailing newline.
    """
    with requests_path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield custom_id_of_line(line), line if line.endswith(b"\n") else line + b"\n"
