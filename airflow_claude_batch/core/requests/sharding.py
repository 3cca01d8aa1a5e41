"""Requests become shard files, each within the API's count and byte limits for one batch.

A shard is a JSON Lines file of requests (``round-r/shard-nnnnn.requests.jsonl``) that the submit step
sends verbatim as ``{"requests":[line,line,...]}``, so its create body is exactly
``limits.batch_body_size(sum of line sizes, count)`` bytes. The writer streams: lines go to the open
shard's whole-or-nothing writer in 1 MiB pieces, and the shard is closed when the next request would
pass a limit. Memory holds one piece, never a shard, let alone the run.

The writer cannot know the input's size up front, so when it closes it evens out its last two shards:
the earlier one's last requests move to the front of the last one (the order of the requests across
shards stays the input's), so 100,000 requests make two batches of 50,000 (each with its marker),
not 99,999 and 1. Both files are rewritten whole-or-nothing after every line was read.
"""

from __future__ import annotations

from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from airflow_claude_batch.core.api.limits import (
    BODY_PREFIX,
    BODY_SUFFIX,
    MAX_BYTES_PER_SHARD,
    MAX_REQUESTS_PER_SHARD,
    batch_body_size,
)
from airflow_claude_batch.core.requests.rendering import EncodedRequest
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer, readable_uri
from airflow_claude_batch.exceptions import InputError, StorageError

_FLUSH_BYTES = 1 << 20
_HIGH_BYTES = bytes(range(128, 256))
_EMPTY_BODY = len(BODY_PREFIX) + len(BODY_SUFFIX)


@dataclass(frozen=True)
class ShardLimits:
    """The most one shard (one batch) may hold.

    :param max_requests: requests per shard, 1 to 99,999 (a batch also carries its marker request).
    :param max_bytes: create-body bytes per shard, measured as sent, at most 255,998,976 (256 MB less
        room for the batch's marker request).
    """

    max_requests: int = MAX_REQUESTS_PER_SHARD
    max_bytes: int = MAX_BYTES_PER_SHARD

    def __post_init__(self) -> None:
        if not _is_whole(self.max_requests) or not 1 <= self.max_requests <= MAX_REQUESTS_PER_SHARD:
            raise InputError(
                f"max_requests_per_shard must be a whole number from 1 to {MAX_REQUESTS_PER_SHARD:,} "
                f"(the API's 100,000 per batch, less the batch's marker request), got {self.max_requests!r}"
            )
        smallest = _EMPTY_BODY + 1
        if not _is_whole(self.max_bytes) or not smallest <= self.max_bytes <= MAX_BYTES_PER_SHARD:
            raise InputError(
                f"max_bytes_per_shard must be a whole number from {smallest} to {MAX_BYTES_PER_SHARD:,} "
                "(the API's 256 MB per batch, less room for the batch's marker request), "
                f"got {self.max_bytes!r}"
            )


def _tally(shard: WrittenShard, request: EncodedRequest, size: int) -> None:
    """Count a request in its shard and in its group's tally."""
    shard.request_count += 1
    shard.request_bytes += size
    prefix = request.cache_prefix
    key = (request.model, prefix.ttl, request.inference_geo)
    group = shard.groups.get(key)
    if group is None:
        group = shard.groups[key] = GroupTally()
    group.requests += 1
    group.request_bytes += size
    group.max_tokens += request.max_tokens
    group.cache_prefix_bytes += prefix.size
    group.largest_request_bytes = max(group.largest_request_bytes, size)
    if not request.line.isascii():
        group.non_ascii_bytes += len(request.line) - len(request.line.translate(None, _HIGH_BYTES))


def _move_tallies(moved: WrittenShard, source: WrittenShard, target: WrittenShard) -> None:
    """Take the moved requests' tallies out of ``source`` and add them to ``target``."""
    for shard, sign in ((source, -1), (target, 1)):
        shard.request_count += sign * moved.request_count
        shard.request_bytes += sign * moved.request_bytes
        for key, part in moved.groups.items():
            group = shard.groups.setdefault(key, GroupTally())
            group.requests += sign * part.requests
            group.request_bytes += sign * part.request_bytes
            group.max_tokens += sign * part.max_tokens
            group.cache_prefix_bytes += sign * part.cache_prefix_bytes
            group.non_ascii_bytes += sign * part.non_ascii_bytes
            # Moving out leaves the largest as it was: still a bound for the estimate.
            group.largest_request_bytes = max(group.largest_request_bytes, part.largest_request_bytes)
            if group.requests == 0:
                del shard.groups[key]


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GroupTally:
    """Requests of one model (and one cache setting) in a shard, for the cost estimate.

    :param requests: how many.
    :param request_bytes: their encoded size.
    :param max_tokens: the sum of their ``max_tokens``.
    :param cache_prefix_bytes: the sum of their cacheable prefixes' sizes.
    :param non_ascii_bytes: the bytes of their lines outside ASCII (scripts such as Chinese or Japanese,
        which the estimate's upper bound counts at one token a byte).
    :param largest_request_bytes: the largest request's size (its prompt-length tier bounds the group's).
    """

    requests: int = 0
    request_bytes: int = 0
    max_tokens: int = 0
    cache_prefix_bytes: int = 0
    non_ascii_bytes: int = 0
    largest_request_bytes: int = 0


@dataclass
class WrittenShard:
    """A shard the writer finished.

    :param index: its number in the round.
    :param path: its requests file.
    :param request_count: requests in it.
    :param request_bytes: the sum of its lines' sizes (without line breaks).
    :param groups: tallies by ``(model, cache ttl or None, inference_geo)``.
    """

    index: int
    path: StoragePath
    request_count: int = 0
    request_bytes: int = 0
    groups: dict[tuple[str, str | None, str | None], GroupTally] = field(default_factory=dict)

    @property
    def body_bytes(self) -> int:
        """The size of the create body that sends this shard."""
        return batch_body_size(self.request_bytes, self.request_count)

    def descriptor(self, run_uri: str, round_index: int, estimated_cost_usd: float = 0.0) -> ShardDescriptor:
        """The shard's descriptor for XCom and ``shards.json``."""
        return ShardDescriptor(
            run_uri=run_uri,
            round=round_index,
            index=self.index,
            uri=str(self.path),
            request_count=self.request_count,
            body_bytes=self.body_bytes,
            estimated_cost_usd=estimated_cost_usd,
        )


class ShardWriter:
    """Writes requests into consecutive shard files of one round, within :class:`ShardLimits`.

    Use as a context manager: on success the last shard is closed; on an error every shard written by
    this writer is removed, so a failed build leaves no requests behind.

    :param folder: the run folder.
    :param round_index: the round the shards belong to.
    :param limits: count and byte limits per shard.
    :param dry_run: count shards and bytes without writing anything.
    :param first_index: the number of the first shard (after the shards a round already has).
    """

    def __init__(
        self,
        folder: RunFolder,
        round_index: int = 0,
        limits: ShardLimits | None = None,
        *,
        dry_run: bool = False,
        first_index: int = 0,
    ) -> None:
        self.folder = folder
        self.first_index = first_index
        self.round_index = round_index
        self.limits = limits or ShardLimits()
        self._max_requests = self.limits.max_requests
        self._max_bytes = self.limits.max_bytes
        self.dry_run = dry_run
        self.shards: list[WrittenShard] = []
        self._current: WrittenShard | None = None
        self._writer: ExitStack | None = None
        self._handle: IO[bytes] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._body = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def add(self, request: EncodedRequest) -> None:
        """Add one request, starting a new shard first when it would not fit in the open one.

        :raises InputError: the request alone is over the byte limit.
        """
        size = len(request.line) - 1
        shard = self._current
        # self._body is the open shard's create-body size (limits.batch_body_size) kept as a running sum:
        # each request adds its bytes and one comma, and the empty shard starts one comma short.
        if (
            shard is None
            or shard.request_count >= self._max_requests
            or self._body + size + 1 > self._max_bytes
        ):
            self._check_alone(request, size)
            shard = self._start_shard()
        self._body += size + 1
        _tally(shard, request, size)
        if not self.dry_run:
            self._pending.append(request.line)
            self._pending_bytes += size
            if self._pending_bytes >= _FLUSH_BYTES:
                self._flush()

    def add_line(self, line: bytes, location: str = "a requeued request") -> None:
        """Add a request given as a shard line (a requeue resends original lines unchanged).

        :param line: the request's line, as an earlier shard file holds it.
        :param location: where the line came from, for error messages.
        """
        self.add(EncodedRequest.from_line(line, location))

    def _check_alone(self, request: EncodedRequest, size: int) -> None:
        body = batch_body_size(size, 1)
        if body <= self.limits.max_bytes:
            return
        if body > MAX_BYTES_PER_SHARD:
            fix = "the API takes at most 256 MB per batch: shorten the prompt or split the document"
        else:
            fix = f"raise max_bytes_per_shard (at most {MAX_BYTES_PER_SHARD:,}) or shorten the prompt"
        raise InputError(
            f"request {request.custom_id!r} alone makes a {body:,}-byte batch body, over the "
            f"{self.limits.max_bytes:,}-byte limit per shard; {fix}",
            location=request.location,
        )

    def _start_shard(self) -> WrittenShard:
        self._close_current()
        index = self.first_index + len(self.shards)
        shard = WrittenShard(index=index, path=self.folder.shard_requests(self.round_index, index))
        self.shards.append(shard)
        self._current = shard
        self._body = _EMPTY_BODY - 1
        if not self.dry_run:
            self._writer = ExitStack()
            self._handle = self._writer.enter_context(atomic_writer(shard.path))
        return shard

    def _flush(self) -> None:
        if self._pending and self._handle is not None:
            try:
                self._handle.write(b"".join(self._pending))
            except OSError as exc:
                # abort() unwinds the shard's writer with an error of its own: say what failed here.
                where = self._current.path if self._current is not None else self.folder.root
                raise StorageError(
                    f"cannot write the shard {where}: {exc}; check the storage path, permissions and "
                    "free space"
                ) from exc
        self._pending = []
        self._pending_bytes = 0

    def _close_current(self) -> None:
        if self._writer is not None:
            self._flush()
            writer, self._writer, self._handle = self._writer, None, None
            writer.close()
        self._current = None

    def close(self) -> list[WrittenShard]:
        """Close the open shard (it becomes visible whole), even out the last two, return every shard."""
        self._close_current()
        if not self.dry_run and len(self.shards) >= 2:
            self._balance(*self.shards[-2:])
        return list(self.shards)

    def _balance(self, earlier: WrittenShard, last: WrittenShard) -> None:
        """Move the earlier shard's last requests to the front of the last shard, until they are even.

        The split is the first line past the even point after which the moving lines fit the last
        shard's byte limit. Nothing is committed before every line has been read, and the tallies
        change only once both files are written.
        """
        moving = (earlier.request_count - last.request_count) // 2
        if moving <= 0:
            return
        keep = earlier.request_count - moving
        room = self._max_bytes - last.body_bytes
        tail_bytes, tail_count = earlier.request_bytes, earlier.request_count
        moved = WrittenShard(index=last.index, path=last.path)  # the tallies of the lines that move
        with suppress(_Unbalanced), ExitStack() as stack:
            kept_out = _Buffered(stack.enter_context(atomic_writer(earlier.path)))
            last_out = _Buffered(stack.enter_context(atomic_writer(last.path)))
            with earlier.path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    size = len(line) - 1
                    if not moved.request_count and (number <= keep or tail_bytes + tail_count > room):
                        kept_out.write(line)  # before the split: these lines stay
                        tail_bytes -= size
                        tail_count -= 1
                        continue
                    location = f"{readable_uri(earlier.path)}:{number}"
                    _tally(moved, EncodedRequest.from_line(line, location), size)
                    last_out.write(line)
            if (
                not moved.request_count
            ):  # the lines past the even point do not fit the last shard: leave both as they were
                raise _Unbalanced  # unwinds both writers, which then discard what they wrote
            with last.path.open("rb") as lines:
                for line in lines:
                    last_out.write(line)
            kept_out.flush()
            last_out.flush()
        _move_tallies(moved, earlier, last)

    def abort(self) -> None:
        """Drop the open shard and remove the shards already closed (nothing is left to be submitted)."""
        writer, self._writer, self._handle = self._writer, None, None
        self._pending = []
        if writer is not None:
            # Unwinding the writer with an error makes it discard its temporary file.
            with suppress(Exception):
                writer.__exit__(RuntimeError, RuntimeError("build aborted"), None)
        self._current = None
        if not self.dry_run:
            for shard in self.shards:
                with suppress(Exception):
                    shard.path.unlink(missing_ok=True)


class _Unbalanced(Exception):
    """The last two shards stay as written."""


class _Buffered:
    """Writes lines to a handle in 1 MiB pieces."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, line: bytes) -> None:
        self.pending.append(line)
        self.size += len(line)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        self.handle.write(b"".join(self.pending))
        self.pending, self.size = [], 0
