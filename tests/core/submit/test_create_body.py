"""The create body streamed from a shard file: the lines joined exactly, the marker last."""

from __future__ import annotations

import orjson
import pytest

from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.requests.marker import marker_line
from airflow_claude_batch.core.submit.create_body import iter_batch_body, sent_body_size
from airflow_claude_batch.exceptions import InputError


def requests_file(count: int) -> list[bytes]:
    return [
        orjson.dumps({"custom_id": f"r{i}", "params": {"model": "m", "x": "é" * i}}) for i in range(count)
    ]


def test_the_body_is_the_lines_joined_exactly() -> None:
    lines = requests_file(5)
    data = b"\n".join(lines) + b"\n"
    size = batch_body_size(sum(map(len, lines)), len(lines))
    chunks = [data[i : i + 10] for i in range(0, len(data), 10)]
    body = b"".join(iter_batch_body(chunks, request_count=5, body_bytes=size, source="s"))
    assert len(body) == size
    assert orjson.loads(body) == {"requests": [orjson.loads(line) for line in lines]}


def test_the_marker_request_comes_last_and_the_size_counts_it() -> None:
    lines = requests_file(5)
    size = batch_body_size(sum(map(len, lines)), len(lines))
    marker = marker_line("acb-marker-abc", "claude-sonnet-4-6")
    body = b"".join(
        iter_batch_body([b"\n".join(lines)], request_count=5, body_bytes=size, source="s", marker=marker)
    )
    assert len(body) == sent_body_size(size, 5, marker)
    requests = orjson.loads(body)["requests"]
    assert requests[:5] == [orjson.loads(line) for line in lines]
    assert requests[5] == {
        "custom_id": "acb-marker-abc",
        "params": {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "airflow-claude-batch marker: reply with one word."}],
        },
    }


def test_a_large_body_comes_in_blocks_of_about_a_megabyte() -> None:
    lines = [b'{"custom_id":"r%d","params":{"t":"%s"}}' % (i, b"x" * 5000) for i in range(1000)]
    size = batch_body_size(sum(map(len, lines)), len(lines))
    blocks = list(iter_batch_body([b"\n".join(lines)], request_count=1000, body_bytes=size, source="s"))
    assert len(blocks) > 3
    assert max(map(len, blocks)) < (1 << 20) + 6000
    assert sum(map(len, blocks)) == size


@pytest.mark.parametrize(("count", "extra"), [(4, 0), (6, 0), (5, -1), (5, 1)])
def test_a_body_that_does_not_match_the_declared_size_stops_before_overflowing(
    count: int, extra: int
) -> None:
    lines = requests_file(5)
    size = batch_body_size(sum(map(len, lines)), len(lines)) + extra
    produced: list[bytes] = []
    body = iter_batch_body([b"\n".join(lines)], request_count=count, body_bytes=size, source="s")
    with pytest.raises(InputError, match="does not match its descriptor"):
        produced.extend(body)
    assert sum(map(len, produced)) <= size
