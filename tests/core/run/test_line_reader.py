"""The JSONL splitter and parser: chunk boundaries anywhere, CRLF, long lines, cut streams."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.run.line_reader import LineSplitter, iter_lines, iter_records
from airflow_claude_batch.exceptions import AfterSubmitError, ResultsStreamInterrupted


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def result_line(index: int, text: str = "ok") -> bytes:
    return orjson.dumps(
        {"custom_id": f"r-{index}", "result": {"type": "succeeded", "message": {"content": [{"text": text}]}}}
    )


def test_lines_split_on_lf_and_crlf_with_blank_lines_skipped() -> None:
    body = b'{"a":1}\n{"a":2}\r\n\r\n\n{"a":3}\n'
    assert list(iter_lines([body])) == [b'{"a":1}', b'{"a":2}', b'{"a":3}']


def test_cr_and_lf_split_across_two_chunks() -> None:
    chunks = [b'{"a":1}\r', b'\n{"a":2}\r', b"\n"]
    assert [record["a"] for record in iter_records(chunks, source="test")] == [1, 2]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
def test_any_chunking_gives_the_same_records(size: int) -> None:
    body = b"".join(result_line(i) + (b"\r\n" if i % 2 else b"\n") for i in range(50))
    records = list(iter_records(chunked(body, size), source="test"))
    assert [record["custom_id"] for record in records] == [f"r-{i}" for i in range(50)]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b)),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=1),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_splitting_matches_a_plain_split_for_every_chunking(
    lines: list[bytes], endings: list[bytes], cuts: list[int]
) -> None:
    body = b"".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    points = sorted({cut % (len(body) + 1) for cut in cuts} | {0, len(body)})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    expected = [line for line in lines if not line.isspace()]
    assert list(iter_lines(chunks)) == expected


def test_multi_megabyte_lines_in_small_chunks() -> None:
    long_text = "x" * 5_000_000
    body = result_line(0, long_text) + b"\n" + result_line(1) + b"\r\n" + result_line(2, long_text) + b"\n"
    records = list(iter_records(chunked(body, 65536), source="test"))
    assert [record["custom_id"] for record in records] == ["r-0", "r-1", "r-2"]
    assert records[2]["result"]["message"]["content"][0]["text"] == long_text


def test_a_long_line_is_held_as_pieces_until_its_newline() -> None:
    splitter = LineSplitter()
    piece = b"y" * 64
    pieces = 50_000  # a 3.2 MB line in 64-byte chunks, the SDK decoder's chunk size
    for _ in range(pieces):
        assert splitter.feed(piece) == []
    assert sum(map(len, splitter._pieces)) == len(piece) * pieces  # held as pieces, never joined early
    assert splitter.feed(b"\r\nnext") == [piece * pieces]
    assert splitter._pieces == [b"next"]
    assert splitter.finish() == b"next"
    assert splitter.finish() is None


def test_unterminated_last_line_that_parses_is_kept() -> None:
    body = result_line(0) + b"\n" + result_line(1)
    assert [record["custom_id"] for record in iter_records([body], source="test")] == ["r-0", "r-1"]


def test_a_stream_cut_in_the_middle_of_a_line_raises_a_retryable_error() -> None:
    body = result_line(0) + b"\n" + result_line(1)[:20]
    records = iter_records(chunked(body, 16), source="results of batch msgbatch_x")
    assert next(records)["custom_id"] == "r-0"
    with pytest.raises(ResultsStreamInterrupted, match="msgbatch_x ended in the middle of line 2"):
        next(records)
    assert issubclass(ResultsStreamInterrupted, AfterSubmitError)


def test_a_line_that_is_not_an_object_raises() -> None:
    with pytest.raises(ResultsStreamInterrupted, match=r"line 2 .* not an object"):
        list(iter_records([b'{"a":1}\n[1,2]\n'], source="results"))
    with pytest.raises(ResultsStreamInterrupted, match=r"line 1 .* not valid JSON"):
        list(iter_records([b"{nope\n"], source="results"))


def test_empty_body_and_whitespace_only_body_give_nothing() -> None:
    assert list(iter_records([], source="test")) == []
    assert list(iter_records([b""], source="test")) == []
    assert list(iter_records([b"\r\n", b"\n  \n"], source="test")) == []


def test_one_hundred_thousand_lines_in_network_sized_chunks() -> None:
    body = b"".join(result_line(i) + b"\n" for i in range(100_000))
    count = 0
    for count, record in enumerate(iter_records(chunked(body, 65536), source="test"), 1):
        assert record["custom_id"] == f"r-{count - 1}"
    assert count == 100_000
