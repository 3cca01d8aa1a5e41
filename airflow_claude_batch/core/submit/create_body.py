"""The create call's body, streamed from a shard file: ``{"requests":[...]}`` without holding it in memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from airflow_claude_batch.core.api.limits import BODY_PREFIX, BODY_SUFFIX
from airflow_claude_batch.core.run.line_reader import LineSplitter
from airflow_claude_batch.exceptions import InputError


def iter_batch_body(
    chunks: Iterable[bytes], *, request_count: int, body_bytes: int, source: str, marker: bytes | None = None
) -> Iterator[bytes]:
    """Yield the create body ``{"requests":[line1,...,lineN,marker]}`` of a shard, in blocks of about 1 MB.

    The lines are sent as they are stored (the build encodes them exactly as the SDK would). The body
    is checked against the declared size as it goes: if the file does not match, :class:`InputError`
    is raised before a byte beyond ``body_bytes`` is produced, so a request sent with that
    ``Content-Length`` is cut short and cannot create a batch.

    :param chunks: the shard file, in blocks.
    :param request_count: requests the shard must hold.
    :param body_bytes: the exact size the body must have.
    :param source: the shard's location, for error messages.
    :param marker: the batch's marker request line, sent after the shard's lines (see
        :func:`sent_body_size` for the body's size with it).
    """
    produced = 0
    count = 0
    block: list[bytes] = [BODY_PREFIX]
    block_size = len(BODY_PREFIX)
    splitter = LineSplitter()

    def mismatch() -> InputError:
        return InputError(
            f"the shard file {source} does not match its descriptor ({request_count:,} requests, "
            f"{body_bytes:,} body bytes); it changed since the build: clear the build task to rebuild"
        )

    def lines() -> Iterator[bytes]:
        for chunk in chunks:
            yield from splitter.feed(chunk)
        tail = splitter.finish()
        if tail is not None:
            yield tail

    for line in lines():
        count += 1
        piece = line if count == 1 else b"," + line
        block.append(piece)
        block_size += len(piece)
        if produced + block_size + len(BODY_SUFFIX) > body_bytes or count > request_count:
            raise mismatch()
        if block_size >= 1 << 20:
            produced += block_size
            yield b"".join(block)
            block, block_size = [], 0
    if count != request_count or produced + block_size + len(BODY_SUFFIX) != body_bytes:
        raise mismatch()
    if marker is not None:
        block.append(b"," + marker if count else marker)
    block.append(BODY_SUFFIX)
    yield b"".join(block)


def sent_body_size(body_bytes: int, request_count: int, marker: bytes | None) -> int:
    """Return the size of the body :func:`iter_batch_body` sends: the shard's, plus its marker request."""
    if marker is None:
        return body_bytes
    return body_bytes + len(marker) + (1 if request_count else 0)
