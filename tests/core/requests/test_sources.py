from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.requests import sources
from airflow_claude_batch.core.requests.sources import (
    CallableRecords,
    FileRecords,
    detect_format,
    expand_glob,
    iter_lines,
    split_glob,
)
from airflow_claude_batch.exceptions import InputError

DATA = Path(__file__).resolve().parents[3] / "tests" / "data"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def records_of(*paths: Path, source_format: str | None = None) -> list[tuple[dict, str]]:
    return list(FileRecords(list(paths), source_format))


# --- JSON Lines ------------------------------------------------------------------------------------


def test_jsonl_records_come_with_file_and_line() -> None:
    got = records_of(DATA / "tickets.jsonl")
    assert got[0] == ({"id": "t-001", "text": "My invoice is wrong."}, "tickets.jsonl:1")
    assert [location for _, location in got] == [f"tickets.jsonl:{n}" for n in range(1, len(got) + 1)]
    assert len(got) == 5


def test_blank_lines_crlf_and_a_missing_final_newline_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'{"id": "a"}\r\n\r\n   \n{"id": "b"}\n{"id": "c"}')
    assert records_of(path) == [
        ({"id": "a"}, "a.jsonl:1"),
        ({"id": "b"}, "a.jsonl:4"),
        ({"id": "c"}, "a.jsonl:5"),
    ]


def test_a_utf8_bom_at_the_start_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "\xc3\xa9"}\n')
    assert records_of(path) == [({"id": "a", "text": "é"}, "bom.jsonl:1")]


def test_a_utf16_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.jsonl", '{"id": "a"}\n'.encode("utf-16"))
    with pytest.raises(InputError, match="re-encode it as UTF-8") as raised:
        records_of(path)
    assert "wide.jsonl" in str(raised.value)


def test_invalid_utf8_names_the_line_and_the_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.jsonl", b'{"id": "a"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"not valid UTF-8 \(byte 0xe9.*re-encode") as raised:
        records_of(path)
    assert raised.value.location == "latin.jsonl:2"


def test_a_malformed_json_line_is_named_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", b'{"id": "a"}\n{"id": "b", "text": "unterminated}\n{"id": "c"}\n')
    with pytest.raises(InputError, match=r"not valid JSON.*fix or remove the line") as raised:
        records_of(path)
    assert raised.value.location == "bad.jsonl:2"
    assert str(raised.value).startswith("bad.jsonl:2: ")


def test_a_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "list.jsonl", b'["a", "b"]\n')
    with pytest.raises(InputError, match="JSON list, not an object") as raised:
        records_of(path)
    assert raised.value.location == "list.jsonl:1"


def test_a_byte_order_mark_inside_the_file_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path / "joined.jsonl", b'{"id": "a"}\n\xef\xbb\xbf{"id": "b"}\n')
    with pytest.raises(InputError, match="byte order mark") as raised:
        records_of(path)
    assert raised.value.location == "joined.jsonl:2"


def test_gzipped_jsonl_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl.gz", gzip.compress(b'{"id": "a"}\n{"id": "b"}\n'))
    assert records_of(path) == [({"id": "a"}, "t.jsonl.gz:1"), ({"id": "b"}, "t.jsonl.gz:2")]


class CountingReader(io.RawIOBase):
    """A file that records how much was read, to show that reading streams."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.data.read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_reading_streams_instead_of_loading_the_file() -> None:
    line = json.dumps({"id": "x", "text": "y" * 1000}).encode() + b"\n"
    handle = CountingReader(line * 10_000)  # about 10 MB
    first = next(sources._jsonl_records(handle, "big.jsonl"))
    assert first[1] == "big.jsonl:1"
    assert handle.bytes_read <= 1 << 20, "the first record must come after one chunk, not the whole file"


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    chunk=st.integers(min_value=1, max_value=40),
    final_newline=st.booleans(),
)
def test_lines_are_the_same_whatever_the_chunk_boundaries(
    lines: list[bytes], chunk: int, final_newline: bool
) -> None:
    if lines and lines[0].startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        lines[0] = b"x" + lines[0]
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got = list(iter_lines(io.BytesIO(data), "t", chunk_size=chunk))
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert [line.rstrip(b"\n") for _, line in got] == expected
    assert [number for number, _ in got] == list(range(1, len(expected) + 1))


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_rows_become_records_named_by_their_first_line() -> None:
    got = records_of(DATA / "tickets.csv")
    assert got[0] == ({"id": "c-1", "text": "Hello, I need help"}, "tickets.csv:2")
    # The second row spans lines 3-4 (a quoted line break); it is named by the line it starts on.
    assert got[1] == ({"id": "c-2", "text": "Two\nlines"}, "tickets.csv:3")
    assert got[2][1] == "tickets.csv:5"


def test_a_ragged_csv_row_is_named_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", b"id,text\na,fine\nb,too,many\n")
    with pytest.raises(InputError, match=r"3 fields but the header has 2.*quote fields") as raised:
        records_of(path)
    assert raised.value.location == "r.csv:3"
    short = write(tmp_path / "s.csv", b"id,text\na\n")
    with pytest.raises(InputError, match="1 fields but the header has 2") as raised:
        records_of(short)
    assert raised.value.location == "s.csv:2"


def test_csv_with_a_bom_and_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", b"\xef\xbb\xbfid,text\na,ok\n")
    assert records_of(path) == [({"id": "a", "text": "ok"}, "bom.csv:2")]
    bad = write(tmp_path / "bad.csv", b"id,text\na,ok\nb,caf\xe9\n")
    with pytest.raises(InputError, match="not valid UTF-8") as raised:
        records_of(bad)
    assert raised.value.location == "bad.csv:3"


def test_an_empty_csv_has_no_records(tmp_path: Path) -> None:
    assert records_of(write(tmp_path / "e.csv", b"")) == []
    assert records_of(write(tmp_path / "h.csv", b"id,text\n")) == []


# --- Parquet ---------------------------------------------------------------------------------------


def test_parquet_rows_are_streamed_with_their_row_number(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    table = pa.table({"id": [f"p-{i}" for i in range(10_000)], "text": [f"row {i}" for i in range(10_000)]})
    pq.write_table(table, path, row_group_size=1000)
    got = records_of(path)
    assert len(got) == 10_000
    assert got[0] == ({"id": "p-0", "text": "row 0"}, "part-0.parquet:row 1")
    assert got[-1] == ({"id": "p-9999", "text": "row 9999"}, "part-0.parquet:row 10000")


def test_a_broken_parquet_file_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.parquet", b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        records_of(path)


# --- formats, files, globs, callables --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", ("jsonl", False)),
        ("a.NDJSON", ("jsonl", False)),
        ("a.csv.gz", ("csv", True)),
        ("a.parquet", ("parquet", False)),
        ("a.pq", ("parquet", False)),
    ],
)
def test_formats_are_told_from_names(name: str, expected: tuple[str, bool]) -> None:
    assert detect_format(name) == expected


def test_an_unknown_format_asks_for_source_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source_format="):
        detect_format("export.txt")
    path = write(tmp_path / "export.txt", b'{"id": "a"}\n')
    assert records_of(path, source_format="jsonl") == [({"id": "a"}, "export.txt:1")]
    with pytest.raises(InputError, match="not one of"):
        detect_format("a.jsonl", "xml")


def test_files_are_read_in_order_and_same_names_are_told_apart(tmp_path: Path) -> None:
    a = write(tmp_path / "2026-01" / "part.jsonl", b'{"id": "a"}\n')
    b = write(tmp_path / "2026-02" / "part.jsonl", b'{"id": "b"}\n')
    got = records_of(a, b)
    assert [record["id"] for record, _ in got] == ["a", "b"]
    assert got[0][1].endswith("2026-01/part.jsonl:1")
    assert got[1][1].endswith("2026-02/part.jsonl:1")


def test_file_records_can_be_read_again() -> None:
    source = FileRecords([DATA / "tickets.jsonl"])
    assert list(source) == list(source)


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist.*check the source URI"):
        records_of(tmp_path / "absent.jsonl")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/in/2026-*/part-*.jsonl", ("s3://bucket/in", "2026-*/part-*.jsonl")),
        ("s3://bucket/tickets.jsonl", ("s3://bucket/tickets.jsonl", None)),
        ("file:///data/*.csv", ("file:///data", "*.csv")),
        ("/data/in/part-?.jsonl", ("/data/in", "part-?.jsonl")),
        ("*.jsonl", (".", "*.jsonl")),
    ],
)
def test_split_glob(uri: str, expected: tuple[str, str | None]) -> None:
    assert split_glob(uri) == expected


def test_expand_glob_sorts_matches_and_refuses_none(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        write(tmp_path / "in" / name, b"{}\n")
    assert [p.name for p in expand_glob(tmp_path / "in", "*.jsonl")] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(InputError, match=r"no file under .* matches '\*\.csv'"):
        expand_glob(tmp_path / "in", "*.csv")


def test_callable_records_are_located_by_the_callable_and_position() -> None:
    def tickets():
        yield {"id": "a", "text": "x"}
        yield {"id": "b", "text": "y"}

    source = CallableRecords(tickets)
    assert list(source) == [
        ({"id": "a", "text": "x"}, "tickets():1"),
        ({"id": "b", "text": "y"}, "tickets():2"),
    ]
    assert list(source) == list(source), "each iteration calls the callable again"


def test_a_callable_yielding_something_else_than_dicts_is_refused() -> None:
    def rows():
        yield {"id": "a"}
        yield ["not", "a", "dict"]

    with pytest.raises(InputError, match="yielded a list") as raised:
        list(CallableRecords(rows))
    assert raised.value.location == "rows():2"


def test_a_failing_or_empty_callable_is_an_input_error() -> None:
    def broken():
        raise RuntimeError("database down")

    with pytest.raises(InputError, match="broken\\(\\) failed: RuntimeError"):
        list(CallableRecords(broken))
    with pytest.raises(InputError, match="returned None"):
        list(CallableRecords(lambda: None))


def test_a_csv_header_that_repeats_a_column_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", b"id,text,id\na,hello,b\n")
    with pytest.raises(InputError, match=r"repeats the column name\(s\) 'id' \(2 times\)") as raised:
        records_of(path)
    assert raised.value.location == "dup.csv:1"


def test_a_parquet_schema_that_repeats_a_column_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["a"]), pa.array(["x"]), pa.array(["y"])], names=["id", "text", "text"]
    )
    pq.write_table(table, path)
    with pytest.raises(InputError, match=r"repeats the column name\(s\) 'text' \(2 times\)") as raised:
        records_of(path)
    assert "dup.parquet" in str(raised.value)
