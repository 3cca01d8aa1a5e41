"""Input records, streamed one at a time from files on any storage or from a callable.

Every record comes with its location (``tickets.jsonl:42``: file and line; ``part-0.parquet:row 7``;
``records():3`` for a callable) so that an error can name it. Files are read in chunks and never held
whole: a million records take the memory of one chunk and one record.

Formats: JSON Lines (``.jsonl``, ``.ndjson``, ``.jsonlines``), CSV with a header row (``.csv``) and
Parquet (``.parquet``, ``.pq``, needs pyarrow); ``.gz`` compression is undone for JSON Lines and CSV.
Text must be UTF-8; a UTF-8 byte order mark at the start of a file is accepted.

The sources are re-iterable (each ``iter()`` starts over), so a later check can look back for the
first occurrence of something, such as a duplicated id.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any, Protocol

import orjson

from airflow_claude_batch.core.run.storage import StoragePath
from airflow_claude_batch.exceptions import InputError, StorageError

Record = dict[str, Any]
FORMATS = ("jsonl", "csv", "parquet")
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CHUNK_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 4096
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_GLOB_CHARS = re.compile(r"[*?\[]")


class RecordSource(Protocol):
    """An iterable of ``(record, location)`` pairs that starts over on each ``iter()``."""

    def __iter__(self) -> Iterator[tuple[Record, str]]: ...


def split_glob(uri: str) -> tuple[str, str | None]:
    """Split ``uri`` into the folder before its first wildcard segment and the pattern from there on.

    ``s3://bucket/in/2026-*/part-*.jsonl`` gives ``("s3://bucket/in", "2026-*/part-*.jsonl")``; a URI
    without ``*``, ``?`` or ``[`` gives ``(uri, None)``.

    :param uri: a file URI, possibly with shell-style wildcards.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    segments = rest.split("/")
    for position, segment in enumerate(segments):
        if _GLOB_CHARS.search(segment):
            base = "/".join(segments[:position])
            return (f"{scheme}{sep}{base}" if sep else base or "."), "/".join(segments[position:])
    return uri, None


def expand_glob(root: Any, pattern: str) -> list[Any]:
    """Return the files under ``root`` that match ``pattern``, sorted by path.

    :param root: a folder path object with ``glob`` (``pathlib.Path``, ``ObjectStoragePath``).
    :param pattern: a relative glob pattern (``*.jsonl``, ``2026-*/part-*.csv``, ``**/*.jsonl``).
    :raises InputError: no file matches.
    """
    try:
        matches = sorted((path for path in root.glob(pattern) if path.is_file()), key=str)
    except OSError as exc:
        raise StorageError(f"cannot list {root}: {exc}; check the source URI and its connection") from exc
    if not matches:
        raise InputError(
            f"no file under {root} matches {pattern!r}; check the source URI, its wildcards and the date"
        )
    return matches


def detect_format(name: str, source_format: str | None = None) -> tuple[str, bool]:
    """Return ``(format, gzipped)`` for a file name, or the format forced by ``source_format``.

    :param name: the file's name.
    :param source_format: ``"jsonl"``, ``"csv"`` or ``"parquet"`` to override the name.
    :raises InputError: the format is unknown or cannot be told from the name.
    """
    lowered = name.lower()
    gzipped = lowered.endswith(".gz")
    stem = lowered.removesuffix(".gz")
    if source_format is not None:
        if source_format not in FORMATS:
            raise InputError(f"source_format {source_format!r} is not one of {', '.join(FORMATS)}")
        return source_format, gzipped
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if stem.endswith(suffix):
            return fmt, gzipped
    raise InputError(
        f"cannot tell the format of {name!r} from its name; name it .jsonl, .csv or .parquet, or set "
        f"source_format= to one of {', '.join(FORMATS)}"
    )


class FileRecords:
    """Records from files, in the order given, each file read as a stream.

    :param paths: the files (path objects with ``open`` and ``name``).
    :param source_format: force one format for every file instead of telling it from the names.
    """

    def __init__(self, paths: Sequence[StoragePath], source_format: str | None = None) -> None:
        if not paths:
            raise InputError("no input files were given; set source= to a file URI or a glob")
        self.paths = tuple(paths)
        self.source_format = source_format
        self.labels = _labels(self.paths)
        for path in self.paths:
            detect_format(path.name, source_format)

    def __iter__(self) -> Iterator[tuple[Record, str]]:
        for path, label in zip(self.paths, self.labels, strict=True):
            fmt, gzipped = detect_format(path.name, self.source_format)
            yield from iter_file_records(path, label, fmt, gzipped=gzipped)


class CallableRecords:
    """Records yielded by a callable; each iteration calls it again.

    :param func: called with no argument, returns an iterable of dicts.
    """

    def __init__(self, func: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.func = func
        self.label = f"{getattr(func, '__name__', 'records')}()"

    def __repr__(self) -> str:
        return f"CallableRecords({self.label})"

    def __iter__(self) -> Iterator[tuple[Record, str]]:
        try:
            records = self.func()
        except Exception as exc:
            raise InputError(f"the source callable {self.label} failed: {exc!r}; fix the callable") from exc
        if records is None:
            raise InputError(f"the source callable {self.label} returned None; return or yield dicts")
        for number, record in enumerate(records, start=1):
            location = f"{self.label}:{number}"
            if not isinstance(record, Mapping):
                raise InputError(
                    f"the source yielded a {type(record).__name__}, not a dict; yield one dict per record",
                    location=location,
                )
            yield (record if isinstance(record, dict) else dict(record)), location


def _labels(paths: Sequence[StoragePath]) -> list[str]:
    # File names are the shortest useful label; full paths only when names repeat (part-0 in two folders).
    names = [path.name for path in paths]
    if len(set(names)) == len(names):
        return names
    return [str(getattr(path, "path", path)) for path in paths]


def iter_file_records(
    path: StoragePath, label: str, fmt: str, *, gzipped: bool = False
) -> Iterator[tuple[Record, str]]:
    """Yield ``(record, location)`` from one file.

    :param path: the file.
    :param label: how locations name the file.
    :param fmt: ``"jsonl"``, ``"csv"`` or ``"parquet"``.
    :param gzipped: undo gzip compression first (JSON Lines and CSV).
    """
    with _open_source(path, label) as raw:
        handle: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        if fmt == "jsonl":
            yield from _jsonl_records(handle, label)
        elif fmt == "csv":
            yield from _csv_records(handle, label)
        else:
            yield from _parquet_records(handle, label)


@contextmanager
def _open_source(path: StoragePath, label: str) -> Iterator[IO[bytes]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise InputError(f"the source file {path} does not exist; check the source URI") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path} is a folder; give a file or a glob such as {path}/*.jsonl") from exc
    except OSError as exc:
        raise StorageError(f"cannot open the source file {path}: {exc}; check access to it") from exc
    try:
        yield handle
    finally:
        handle.close()


def iter_lines(handle: IO[bytes], label: str, chunk_size: int = _CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line)`` without the ``\\n``, reading ``handle`` in chunks (1 MiB).

    A UTF-8 byte order mark at the start is dropped; a UTF-16 or UTF-32 file is refused. A line longer
    than a chunk is gathered in parts and joined once, so long lines cost linear time. Only ``\\n``
    ends a line (a ``\\r`` before it stays), never U+2028 or other Unicode line breaks.
    """
    pending: list[bytes] = []
    number = 0
    chunk = _strip_bom(_read_chunk(handle, label, number, chunk_size), label)
    while chunk:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if pending and lines:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        for line in lines:
            number += 1
            yield number, line
        if tail:
            pending.append(tail)
        chunk = _read_chunk(handle, label, number, chunk_size)
    if pending:
        yield number + 1, b"".join(pending)


def _read_chunk(handle: IO[bytes], label: str, lines_read: int, size: int) -> bytes:
    try:
        return handle.read(size)
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {label} after line {lines_read}: {exc}; check the file") from exc


def _strip_bom(chunk: bytes, label: str) -> bytes:
    if chunk.startswith(_UTF8_BOM):
        return chunk[len(_UTF8_BOM) :]
    if chunk.startswith(_UTF16_BOMS):
        raise InputError(
            f"{label} is UTF-16 or UTF-32 encoded; re-encode it as UTF-8 (for example "
            "`iconv -f UTF-16 -t UTF-8`)"
        )
    return chunk


def _jsonl_records(handle: IO[bytes], label: str) -> Iterator[tuple[Record, str]]:
    loads = orjson.loads
    for number, line in iter_lines(handle, label):
        try:
            record = loads(line)
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                continue
            raise InputError(_json_line_problem(line, exc), location=f"{label}:{number}") from None
        if type(record) is not dict:
            raise InputError(
                f"the line holds a JSON {type(record).__name__}, not an object; write one "
                '{"id": ..., "text": ...} object per line',
                location=f"{label}:{number}",
            )
        yield record, f"{label}:{number}"


def _json_line_problem(line: bytes, exc: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return (
            f"the line is not valid UTF-8 (byte 0x{line[bad.start]:02x} at byte {bad.start + 1} of the "
            "line); re-encode the file as UTF-8"
        )
    if line.startswith(_UTF8_BOM):
        return "the line starts with a byte order mark (files joined together?); remove it"
    return f"the line is not valid JSON ({exc}); fix or remove the line (one JSON object per line)"


def _csv_records(handle: IO[bytes], label: str) -> Iterator[tuple[Record, str]]:
    def text_lines() -> Iterator[str]:
        for number, line in iter_lines(handle, label):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise InputError(
                    f"the line is not valid UTF-8 (byte 0x{line[bad.start]:02x} at byte {bad.start + 1}); "
                    "re-encode the file as UTF-8",
                    location=f"{label}:{number}",
                ) from None
            yield text + "\n"  # the reader needs the break to keep it inside a quoted field

    # strict: an unclosed quote fails at its row instead of silently swallowing the rows after it
    reader = csv.reader(text_lines(), strict=True)
    header = _next_csv_row(reader, label)
    if header is None:
        return
    refuse_repeated_columns(header, f"{label}:1", "the CSV header")
    width = len(header)
    while True:
        # The reader counts the lines it consumed, so the next row starts on the line after.
        location = f"{label}:{reader.line_num + 1}"
        row = _next_csv_row(reader, label)
        if row is None:
            return
        if not row:
            continue
        if len(row) != width:
            raise InputError(
                f"the row has {len(row)} fields but the header has {width}; quote fields that contain "
                'commas or line breaks ("a, b") and give every row the same columns',
                location=location,
            )
        yield dict(zip(header, row, strict=True)), location


def refuse_repeated_columns(names: Sequence[str], location: str, where: str) -> None:
    """Refuse a file whose columns repeat a name: one of them would silently replace the other.

    :raises InputError: naming the repeated columns and the file.
    """
    counts = Counter(names)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        shown = ", ".join(f"{name!r} ({counts[name]} times)" for name in repeated)
        raise InputError(
            f"{where} repeats the column name(s) {shown}: a record would keep only one of them, so "
            "values (ids, prompts) could be silently replaced; give every column its own name",
            location=location,
        )


def _next_csv_row(reader: Any, label: str) -> list[str] | None:
    location = f"{label}:{reader.line_num + 1}"
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise InputError(
            f"the CSV row cannot be read ({exc}): a quote in it is not closed, or text follows a closing "
            'quote; quote whole fields and double every quote inside them ("")',
            location=location,
        ) from None


def _parquet_records(handle: IO[bytes], label: str) -> Iterator[tuple[Record, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(
            f"reading {label} needs pyarrow; install airflow-claude-batch[parquet] or convert the file "
            "to JSON Lines"
        ) from exc
    row = 0
    try:
        parquet = pq.ParquetFile(handle)
        refuse_repeated_columns(parquet.schema_arrow.names, label, "the Parquet schema")
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                row += 1
                yield record, f"{label}:row {row}"
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise InputError(
            f"{label} is not a readable Parquet file after row {row} ({exc}); check the file"
        ) from exc
