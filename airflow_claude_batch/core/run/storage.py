"""Whole-or-nothing writes and small JSON files on any path-like storage.

Works with ``pathlib.Path``, ``upath.UPath`` and Airflow's ``ObjectStoragePath`` alike: the core only
uses ``open``, ``rename``, ``unlink``, ``exists``, ``parent``, ``name`` and ``/``.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import orjson

from airflow_claude_batch.exceptions import StorageError

T = TypeVar("T")
#: Bytes :func:`atomic_writer` gathers before it writes them to the storage's file.
WRITE_BUFFER_BYTES = 1 << 20


@runtime_checkable
class StoragePath(Protocol):
    """The subset of the pathlib API the core needs from a storage location."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> StoragePath: ...

    def __truediv__(self, other: str) -> StoragePath: ...

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]: ...

    def exists(self) -> bool: ...

    def rename(self, target: Any) -> Any: ...

    def unlink(self, missing_ok: bool = False) -> None: ...

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None: ...


def _is_local(path: StoragePath) -> bool:
    protocol = getattr(path, "protocol", "") or ""
    return protocol in ("", "file", "local")


@contextmanager
def atomic_writer(path: StoragePath) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing so that readers see the whole file or no file.

    The bytes go to a hidden temporary sibling that is moved over ``path`` once complete: a rename
    locally, a server-side copy on object stores (where closing a half-written upload after an error
    would otherwise publish it). On any error nothing is left at ``path``, and an older complete
    version stays as it was.
    """
    if _is_local(path):
        # Object stores have no folders; "creating" one there would create a missing bucket instead.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the folder {path.parent}: {exc}; check the storage path and its permissions"
            ) from exc
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
    try:
        with temporary.open("wb") as handle:
            # Callers write a line at a time; a path's own file object (fsspec's, behind Airflow's
            # ObjectStoragePath) costs microseconds a call, so lines are handed to it a MiB at a time.
            forward = _Forward(handle)
            buffered = io.BufferedWriter(forward, buffer_size=WRITE_BUFFER_BYTES)
            try:
                yield buffered
                buffered.flush()
            finally:
                forward.drop()
        temporary.rename(path)
    except BaseException as exc:
        _remove_quietly(temporary)
        if isinstance(exc, OSError):
            raise StorageError(
                f"cannot write {path}: {exc}; check the storage path, permissions and free space"
            ) from exc
        raise


class _Forward(io.RawIOBase):
    """The raw side of :func:`atomic_writer`'s buffer: bytes go to the storage's file until dropped
    (after an error nothing more may reach the temporary file, which is removed)."""

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self._handle: IO[bytes] | None = handle

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._handle is not None:
            self._handle.write(bytes(data))
        return len(data)

    def drop(self) -> None:
        self._handle = None


def _remove_quietly(path: StoragePath) -> None:
    with suppress(OSError):
        path.unlink(missing_ok=True)


def write_json(path: StoragePath, value: Any) -> None:
    """Write ``value`` as indented JSON, whole or not at all."""
    with atomic_writer(path) as handle:
        handle.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def read_bytes(path: StoragePath) -> bytes | None:
    """Read a whole file; ``None`` when it does not exist. Any other failure raises ``StorageError``.

    A read error is never taken to mean "no file": callers use ``None`` to decide that nothing was
    done yet, and guessing wrong there could pay twice.
    """

    def whole() -> bytes:
        with path.open("rb") as handle:
            return handle.read()

    return read_or_none(path, whole)


def read_or_none(path: StoragePath, read: Callable[[], T]) -> T | None:
    """Return ``read()``; ``None`` when ``path`` does not exist, ``StorageError`` on any other failure.

    :param path: the file ``read`` reads, for the message.
    :param read: reads the file (its bytes, or its bytes and version).
    """
    try:
        return read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(
            f"cannot read {path}: {exc}; the run will retry, fix access if it persists"
        ) from exc


def folder_names(folder: StoragePath) -> list[str]:
    """The names in ``folder``, sorted; none when it does not exist."""
    try:
        if not folder.exists():
            return []
        return sorted(entry.name for entry in folder.iterdir())  # type: ignore[attr-defined]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {folder}: {exc}; check the storage root and its connection") from exc


def read_json(path: StoragePath) -> Any | None:
    """Read a JSON file; ``None`` when it does not exist (see :func:`read_bytes`)."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StorageError(f"{path} is not valid JSON ({exc}); it was not written by this package") from exc


def iter_jsonl(path: StoragePath, chunk_size: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """Yield each line of a JSONL file as a dict, holding one line at a time."""
    with path.open("rb") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield orjson.loads(line)


def readable_uri(location: StoragePath | str) -> str:
    """Return ``location`` as a URI a person can paste into another tool: without the user part that
    Airflow's ``ObjectStoragePath`` writes there (``s3://aws_default@bucket/key`` becomes
    ``s3://bucket/key``), which no other tool reads and which could hold a secret.

    :param location: a path-like object or a URI.
    """
    text = str(location)
    parts = urlsplit(text)
    if not parts.scheme or "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
