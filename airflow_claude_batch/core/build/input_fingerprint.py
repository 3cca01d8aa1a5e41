"""What a build read: the input files as the store describes them, and a digest of the request settings.

Stored as ``input.json`` in the run folder next to ``round-0/shards.json``. A rerun of the build
compares the input as it is now with it, so a change is never silently ignored (see
:mod:`airflow_claude_batch.core.build.input_change`). Reading it costs one ``stat`` per file, never a read of
the records: a file counts as changed when its size or its version (the store's ETag, else its
modification time) differs, or when it appears or disappears. A callable source is known by its name
only; its records cannot be compared without calling it.

A ``stat`` that fails (a store's hiccup) is tried again a few times (:data:`STAT_ATTEMPTS`); if it
still fails, the file's size and version are recorded as unknown (``null``), and an unknown value is
never a change: it is compared with nothing, so one failed ``stat`` cannot make every later rerun fail
as "changed". What an unknown value cannot show (a change of that field) is logged as a warning.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sources import CallableRecords, FileRecords, RecordSource
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import StoragePath, read_json, write_json
from airflow_claude_batch.core.run.url_secrets import masked_url

FINGERPRINT_SCHEMA_VERSION = 1
#: Tries of a file's ``stat`` before its size and version are recorded as unknown.
STAT_ATTEMPTS = 4
STAT_RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """One input file as the store describes it.

    :param uri: the file.
    :param size: its size in bytes, when the store gives it (``None``: unknown, never a change).
    :param version: its ETag, else its modification time, when the store gives one (``None``: unknown).
    """

    uri: str
    size: int | None
    version: str | None


@dataclass(frozen=True)
class InputFingerprint:
    """What one build read.

    :param files: the input files, in reading order; ``None`` for a callable source.
    :param source_name: the callable's name, for a callable source.
    :param params_digest: sha256 of the request settings (model, max tokens, system prompt, fields...).
    :param data_interval: the run's data interval, ``[start, end]`` in ISO 8601, or ``None``.
    """

    files: tuple[InputFile, ...] | None
    source_name: str | None
    params_digest: str
    data_interval: tuple[str, str] | None = None
    schema_version: int = FINGERPRINT_SCHEMA_VERSION

    @property
    def sources(self) -> tuple[str, ...] | None:
        """The input URIs, sorted; ``None`` for a callable source."""
        return None if self.files is None else tuple(sorted(file.uri for file in self.files))

    def changes_since(self, earlier: InputFingerprint) -> list[str]:
        """Describe what differs from ``earlier`` (empty: the input is unchanged)."""
        changes = []
        if self.params_digest != earlier.params_digest:
            changes.append("the request settings (model, max_tokens, system, fields or render) changed")
        if self.source_name != earlier.source_name:
            changes.append(f"the source changed from {earlier.source_name} to {self.source_name}")
        now = {file.uri: file for file in self.files or ()}
        before = {file.uri: file for file in earlier.files or ()}
        for uri in sorted(now.keys() - before.keys()):
            changes.append(f"{uri} is new")
        for uri in sorted(before.keys() - now.keys()):
            changes.append(f"{uri} is gone")
        for uri in sorted(now.keys() & before.keys()):
            old, new = before[uri], now[uri]
            if _known_and_different(old.size, new.size):
                changes.append(f"{uri} changed size from {old.size} to {new.size} bytes")
            elif _known_and_different(old.version, new.version):
                changes.append(f"{uri} was modified (version {old.version} -> {new.version})")
            elif None in (old.size, new.size, old.version, new.version):
                log.warning(
                    "%s: its size or version was not known to one of the builds (a failed stat), so a "
                    "change of it cannot be seen; it is taken as unchanged",
                    uri,
                )
        return changes

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "files": None if self.files is None else [vars(file) for file in self.files],
            "source_name": self.source_name,
            "params_digest": self.params_digest,
            "data_interval": None if self.data_interval is None else list(self.data_interval),
        }

    @classmethod
    def from_dict(cls, data: Any) -> InputFingerprint | None:
        """Read a stored fingerprint; ``None`` when it is not one this version understands."""
        if not isinstance(data, dict) or data.get("schema_version") != FINGERPRINT_SCHEMA_VERSION:
            return None
        try:
            files = data.get("files")
            interval = data.get("data_interval")
            return cls(
                files=None if files is None else tuple(InputFile(**file) for file in files),
                source_name=data.get("source_name"),
                params_digest=str(data["params_digest"]),
                data_interval=None if interval is None else (str(interval[0]), str(interval[1])),
            )
        except (KeyError, IndexError, TypeError):
            return None


def read_fingerprint(folder: RunFolder) -> InputFingerprint | None:
    """The fingerprint the run's build recorded, or ``None`` (none recorded, or by another version)."""
    return InputFingerprint.from_dict(read_json(folder.input_fingerprint))


def write_fingerprint(folder: RunFolder, fingerprint: InputFingerprint) -> None:
    write_json(folder.input_fingerprint, fingerprint.to_dict())


def fingerprint_input(
    source: RecordSource,
    template: RequestTemplate,
    *,
    data_interval: Sequence[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> InputFingerprint:
    """Describe ``source`` (one ``stat`` per file) and digest ``template`` and ``settings``.

    :param settings: more values that shape the requests (a source format, say), digested with the
        template.
    """
    files = None
    source_name = None
    if isinstance(source, FileRecords):
        files = tuple(_describe(path) for path in source.paths)
    elif isinstance(source, CallableRecords):
        source_name = source.label
    else:
        source_name = type(source).__name__
    interval = None if data_interval is None else (str(data_interval[0]), str(data_interval[1]))
    return InputFingerprint(files, source_name, _digest(template, settings or {}), interval)


def _known_and_different(old: object, new: object) -> bool:
    """Whether two values of a field differ, both known: an unknown value is never a change."""
    return old is not None and new is not None and old != new


def _describe(path: StoragePath, sleep: Callable[[float], None] = time.sleep) -> InputFile:
    uri = masked_url(str(path))  # a signed URL's token is never stored (input.json, owner records)
    info = _stat(path, sleep)
    if info is None:
        return InputFile(uri, None, None)
    size = _get(info, "size", "st_size")
    version = _get(info, "ETag", "etag", "LastModified", "mtime", "st_mtime", "last_modified")
    return InputFile(uri, None if size is None else int(size), None if version is None else str(version))


def _stat(path: StoragePath, sleep: Callable[[float], None]) -> Any:
    """The file's ``stat``, tried :data:`STAT_ATTEMPTS` times; ``None`` when it stays unknown."""
    stat = getattr(path, "stat", None)
    if stat is None:
        return None
    for attempt in range(STAT_ATTEMPTS):
        try:
            return stat()
        except OSError as exc:
            if attempt + 1 == STAT_ATTEMPTS:
                log.warning(
                    "%s: stat failed %d times (%s: %s); its size and version are recorded as unknown",
                    path,
                    STAT_ATTEMPTS,
                    type(exc).__name__,
                    exc,
                )
                return None
            sleep(STAT_RETRY_DELAYS_SECONDS[min(attempt, len(STAT_RETRY_DELAYS_SECONDS) - 1)])
    return None


def _get(info: Any, *names: str) -> Any:
    for name in names:
        value = info.get(name) if isinstance(info, dict) else None
        if value is None:
            value = getattr(info, name, None)
        if value is not None:
            return value
    return None


def _digest(template: RequestTemplate, settings: dict[str, Any]) -> str:
    render = template.render
    render_name = None if render is None else f"{render.__module__}.{getattr(render, '__qualname__', render)}"
    described = {
        "custom_id_field": template.custom_id_field,
        "prompt_field": template.prompt_field,
        "model": template.model,
        "max_tokens": template.max_tokens,
        "system": template.system,
        "cache_system": template.cache_system,
        "render": render_name,
        **settings,
    }
    if template.additions:
        described["additions"] = template.additions
    return hashlib.sha256(orjson.dumps(described, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()
