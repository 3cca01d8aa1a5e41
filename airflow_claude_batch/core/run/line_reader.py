"""Byte stream → JSONL lines → dicts, in linear time and one line in memory at a time.

The results of a batch arrive as one JSONL body of up to hundreds of megabytes, in chunks of whatever
size the network delivers. :class:`LineSplitter` cuts those chunks into lines: every byte is copied a
constant number of times (a long line is kept as a list of pieces and joined once, when its newline
arrives), CRLF endings are accepted, including a CR and its LF split across two chunks, and blank
lines are skipped. :func:`iter_records` parses each line with orjson.

No I/O happens here: callers pass any iterable of ``bytes`` (an HTTP body, a file read in blocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from airflow_claude_batch.exceptions import ResultsStreamInterrupted

#: A good read size for callers: large enough that the per-chunk Python work is negligible.
DEFAULT_CHUNK_SIZE = 1 << 20


class LineSplitter:
    """Cut a stream of byte chunks into lines, holding at most one unfinished line.

    Feed chunks in order with :meth:`feed`; call :meth:`finish` at the end of the stream to get the
    last line if it had no final newline. Lines are returned without their ``\\n`` / ``\\r\\n`` ending;
    lines that are empty or only whitespace are skipped.
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the lines that ``chunk`` completes, in order."""
        last_newline = chunk.rfind(b"\n")
        if last_newline < 0:
            if chunk:
                self._pieces.append(chunk)
            return []
        complete = chunk[:last_newline]
        if self._pieces:
            self._pieces.append(complete)
            complete = b"".join(self._pieces)
            self._pieces = []
        rest = chunk[last_newline + 1 :]
        if rest:
            self._pieces.append(rest)
        return [line for line in map(_without_cr, complete.split(b"\n")) if line and not line.isspace()]

    def finish(self) -> bytes | None:
        """Return the unterminated last line, or ``None`` when the stream ended with a newline."""
        tail = _without_cr(b"".join(self._pieces))
        self._pieces = []
        return tail if tail and not tail.isspace() else None


def _without_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield every non-blank line of the stream, the unterminated last one included."""
    splitter = LineSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    tail = splitter.finish()
    if tail is not None:
        yield tail


def iter_records(chunks: Iterable[bytes], *, source: str) -> Iterator[dict[str, Any]]:
    """Yield each line of a JSONL stream as a dict.

    A last line without its final newline is accepted when it parses (some servers omit the newline);
    otherwise the stream was cut and :class:`ResultsStreamInterrupted` is raised, as it is for a line
    that is not a JSON object.

    :param chunks: the body, as byte chunks of any size.
    :param source: what is being read (e.g. ``"results of batch msgbatch_..."``), for error messages.
    """
    splitter = LineSplitter()
    number = 0
    for chunk in chunks:
        for line in splitter.feed(chunk):
            number += 1
            yield _parse(line, number, source)
    tail = splitter.finish()
    if tail is not None:
        number += 1
        try:
            yield _parse(tail, number, source)
        except ResultsStreamInterrupted:
            raise ResultsStreamInterrupted(
                f"the {source} ended in the middle of line {number} ({len(tail):,} bytes without a "
                "final newline): the download was cut; download the results again"
            ) from None


def _parse(line: bytes, number: int, source: str) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ResultsStreamInterrupted(
            f"line {number} of the {source} is not valid JSON ({exc}); the download was damaged; "
            "download the results again"
        ) from None
    if not isinstance(record, dict):
        raise ResultsStreamInterrupted(
            f"line {number} of the {source} is a JSON {type(record).__name__}, not an object; "
            "download the results again"
        )
    return record
