"""Writes the storage itself makes exclusive: create-only, and replace-only-if-unchanged.

Two writers of one record (a zombie task and its retry, two schedulers, two deployments on one bucket)
are settled here, never by reading first: of two creates of one file exactly one succeeds, and a
replace succeeds only over the version its writer read (compare-and-swap). The loser gets
:class:`~airflow_claude_batch.exceptions.WriteConflictError` and reads what the winner wrote.

How each storage does it:

- **local files** (``file://``, plain paths): create is ``os.link`` of a complete temporary file (fails
  when the name exists); replace holds an ``fcntl`` lock on a sibling ``.lock`` file while it compares
  the current bytes' digest and renames the new file over (every replace of the package takes that
  lock; readers never need it, a rename is atomic). The version is the content's sha256.
- **S3** (``s3://``, through s3fs): ``PutObject`` with ``If-None-Match: *`` to create and
  ``If-Match: <ETag>`` to replace; the read returns the body and its ETag from one ``GetObject``.
- **any other storage** (GCS, Azure, ...) is refused with ``ConditionalWritesUnsupportedError``,
  unless the caller opts into the weaker mode (``[claude_batch] allow_unconditional_writes``): then a
  create checks that the file is missing and a replace that it is unchanged just before writing, which
  two writers racing within that moment can both pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer, read_bytes, read_or_none
from airflow_claude_batch.exceptions import (
    ConditionalWritesUnsupportedError,
    StorageError,
    WriteConflictError,
)

_LOCAL = ("", "file", "local")
_S3 = ("s3", "s3a")
OPT_IN = (
    "[claude_batch] allow_unconditional_writes = True (AIRFLOW__CLAUDE_BATCH__ALLOW_UNCONDITIONAL_WRITES)"
)


@dataclass(frozen=True)
class Versioned:
    """A file's bytes and the version a replace must name.

    :param data: the file's content.
    :param version: the ETag (S3) or the content's sha256 (local and the weaker mode).
    """

    data: bytes
    version: str


def _protocol(path: StoragePath) -> str:
    protocol = getattr(path, "protocol", "") or ""
    return protocol[0] if isinstance(protocol, (tuple, list)) else str(protocol)


def check_supported(path: StoragePath, *, allow_unconditional: bool) -> None:
    """Refuse a storage without conditional writes (``ConditionalWritesUnsupportedError``) unless allowed."""
    protocol = _protocol(path)
    if protocol in _LOCAL or protocol in _S3 or allow_unconditional:
        return
    raise ConditionalWritesUnsupportedError(
        f"the storage of {path} ({protocol}://) offers this package no create-only or compare-and-swap "
        "write, so two submits of one shard at the same moment could both create a batch (paid twice). "
        "Use local files or S3 for the run folders, or accept the weaker mode (a check just before each "
        f"write) with {OPT_IN}; see docs/operations.md"
    )


def read_versioned(path: StoragePath) -> Versioned | None:
    """Read a file and its version; ``None`` when it does not exist, ``StorageError`` on any other failure."""
    if _protocol(path) in _S3:
        got = read_or_none(path, lambda: _s3_get(path))
        return None if got is None else Versioned(*got)
    data = read_bytes(path)
    return None if data is None else Versioned(data, _digest(data))


def create_only(path: StoragePath, data: bytes, *, allow_unconditional: bool = False) -> str:
    """Write ``data`` to ``path`` only if no file is there; return its version.

    :raises WriteConflictError: the file exists (another writer made it first).
    """
    check_supported(path, allow_unconditional=allow_unconditional)
    protocol = _protocol(path)
    if protocol in _S3:
        return _s3_put(path, data, IfNoneMatch="*")
    if protocol in _LOCAL:
        return _local_create(path, data)
    if path.exists():
        raise WriteConflictError(f"{path} was written by another writer first")
    return _plain_write(path, data)


def replace_if(path: StoragePath, data: bytes, version: str, *, allow_unconditional: bool = False) -> str:
    """Replace ``path`` with ``data`` only if it is still at ``version``; return the new version.

    :raises WriteConflictError: the file changed (or vanished) since ``version`` was read.
    """
    check_supported(path, allow_unconditional=allow_unconditional)
    protocol = _protocol(path)
    if protocol in _S3:
        return _s3_put(path, data, IfMatch=version)
    if protocol in _LOCAL:
        with _local_lock(path):
            _check_version(path, version)
            return _plain_write(path, data)
    _check_version(path, version)
    return _plain_write(path, data)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_version(path: StoragePath, version: str) -> None:
    current = read_versioned(path)
    if current is None or current.version != version:
        raise WriteConflictError(f"{path} was changed by another writer since it was read")


def _plain_write(path: StoragePath, data: bytes) -> str:
    with atomic_writer(path) as handle:
        handle.write(data)
    return _digest(data)


# --- local files ---------------------------------------------------------------------------------


def _local_name(path: StoragePath) -> str:
    inner = getattr(path, "path", None)
    return inner if isinstance(inner, str) and _protocol(path) else os.fspath(path)  # type: ignore[arg-type]


def _local_create(path: StoragePath, data: bytes) -> str:
    target = _local_name(path)
    folder = os.path.dirname(target) or "."
    temporary = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.partial")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, target)  # atomic, and fails when the name exists
    except FileExistsError:
        raise WriteConflictError(f"{path} was written by another writer first") from None
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc}; check the storage path, permissions and free space"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return _digest(data)


@contextlib.contextmanager
def _local_lock(path: StoragePath) -> Iterator[None]:
    import fcntl  # POSIX only, as the workers are

    target = _local_name(path)
    lock_name = os.path.join(os.path.dirname(target) or ".", f".{os.path.basename(target)}.lock")
    try:
        handle = open(lock_name, "a+b")  # noqa: SIM115 - held for the block below
    except OSError as exc:
        raise StorageError(f"cannot lock {path}: {exc}; check the storage path and its permissions") from exc
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- S3 ------------------------------------------------------------------------------------------


def _s3_location(path: StoragePath) -> tuple[Any, str, str]:
    fs = path.fs  # type: ignore[attr-defined]
    bucket, key, _ = fs.split_path(path.path)  # type: ignore[attr-defined]
    return fs, bucket, key


def _s3_put(path: StoragePath, data: bytes, **condition: str) -> str:
    fs, bucket, key = _s3_location(path)
    try:
        answer = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
    except FileExistsError:  # s3fs's name for 412 Precondition Failed
        raise WriteConflictError(f"{path} was written or changed by another writer first") from None
    except OSError as exc:
        if _is_conflict(exc):
            raise WriteConflictError(f"{path} was written or changed by another writer first") from None
        raise StorageError(f"cannot write {path}: {exc}; check the bucket and its permissions") from exc
    finally:
        fs.invalidate_cache(path.path)  # type: ignore[attr-defined]
    return str(answer["ETag"])


def _is_conflict(exc: BaseException) -> bool:
    """412 (precondition failed) or 409 (a concurrent conditional write), however s3fs wrapped it."""
    current: BaseException | None = exc
    while current is not None:
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return True
        current = current.__cause__ or current.__context__
    return False


def _s3_get(path: StoragePath) -> tuple[bytes, str]:
    from fsspec.asyn import sync  # s3fs is asynchronous; its synchronous calls go through this

    fs, bucket, key = _s3_location(path)

    async def get() -> tuple[bytes, str]:
        answer = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        body = answer["Body"]
        try:
            return await body.read(), str(answer["ETag"])
        finally:
            body.close()

    return sync(fs.loop, get)
