from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.api.limits import (
    BODY_PREFIX,
    BODY_SUFFIX,
    MAX_BATCH_BYTES,
    MAX_REQUESTS_PER_BATCH,
    MAX_REQUESTS_PER_SHARD,
    batch_body_size,
)
from airflow_claude_batch.core.requests.rendering import EncodedRequest, RequestRenderer, RequestTemplate
from airflow_claude_batch.core.requests.sharding import ShardLimits, ShardWriter, WrittenShard
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import InputError, StorageError

RENDERER = RequestRenderer(RequestTemplate(model="claude-haiku-4-5", max_tokens=16))


def request(n: int, text: str = "x") -> EncodedRequest:
    return RENDERER.render({"id": f"r-{n}", "text": text}, f"in.jsonl:{n + 1}")


def folder_in(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(tmp_path / "runs", "dag", "run", "claude_batch")


def sent_body(shard: WrittenShard) -> bytes:
    """The create body the submit step sends for a shard file: its lines joined by commas."""
    lines = Path(str(shard.path)).read_bytes().splitlines()
    return BODY_PREFIX + b",".join(lines) + BODY_SUFFIX


def write(tmp_path: Path, requests: list[EncodedRequest], limits: ShardLimits) -> list[WrittenShard]:
    with ShardWriter(folder_in(tmp_path), 0, limits) as writer:
        for each in requests:
            writer.add(each)
    return writer.shards


def test_100000_records_make_two_balanced_batches_each_within_the_api_limit_with_its_marker(
    tmp_path: Path,
) -> None:
    """99,999 requests and the marker make the API's 100,000; one more record makes two even shards
    (50,000 + 50,000, each sent with its marker), not 99,999 + 1, and the input's order is kept."""
    assert MAX_REQUESTS_PER_SHARD + 1 == MAX_REQUESTS_PER_BATCH
    requests = [request(n) for n in range(MAX_REQUESTS_PER_SHARD + 1)]
    one = write(tmp_path / "a", requests[:-1], ShardLimits())
    assert [shard.request_count for shard in one] == [MAX_REQUESTS_PER_SHARD]
    two = write(tmp_path / "b", requests, ShardLimits())
    assert [shard.request_count for shard in two] == [50_000, 50_000]
    for shard in two:
        sent = orjson.loads(sent_body(shard))["requests"]
        assert len(sent) + 1 <= MAX_REQUESTS_PER_BATCH  # the marker counts within the limit
        assert len(sent_body(shard)) == shard.body_bytes
        assert sum(group.requests for group in shard.groups.values()) == shard.request_count
    ids = [item["custom_id"] for shard in two for item in orjson.loads(sent_body(shard))["requests"]]
    assert ids == [each.custom_id for each in requests]
    with pytest.raises(InputError, match="less the batch's marker request"):
        ShardLimits(max_requests=MAX_REQUESTS_PER_BATCH)


def test_a_shard_that_would_pass_the_byte_limit_by_one_byte_starts_a_new_shard(tmp_path: Path) -> None:
    requests = [request(n, "é😀 multi-byte") for n in range(10, 13)]  # equal sizes (same id length)
    size = requests[0].size
    assert {r.size for r in requests} == {size}
    exact = batch_body_size(3 * size, 3)
    fits = write(tmp_path / "a", requests, ShardLimits(max_bytes=exact))
    assert [(s.request_count, s.body_bytes) for s in fits] == [(3, exact)]
    assert len(sent_body(fits[0])) == exact
    over = write(tmp_path / "b", requests, ShardLimits(max_bytes=exact - 1))
    assert [s.request_count for s in over] == [2, 1]
    assert all(len(sent_body(s)) == s.body_bytes <= exact - 1 for s in over)


def test_sizes_count_bytes_as_sent_not_characters(tmp_path: Path) -> None:
    text = "中文😀é"  # 5 characters, 3+3+4+2 = 12 UTF-8 bytes, sent unescaped
    shard = write(tmp_path, [request(1, text)], ShardLimits())[0]
    body = sent_body(shard)
    assert text.encode() in body
    assert len(body) == shard.body_bytes == batch_body_size(request(1, text).size, 1)


def test_a_request_alone_over_the_shard_limit_names_the_record_and_the_fix(tmp_path: Path) -> None:
    big = request(7, "y" * 500)
    with pytest.raises(InputError, match=r"'r-7' alone makes a .*raise max_bytes_per_shard") as raised:
        write(tmp_path, [request(1), big], ShardLimits(max_bytes=400))
    assert raised.value.location == "in.jsonl:8"
    assert not list((tmp_path / "runs").rglob("*.jsonl")), "the shard written before the error is removed"


def test_a_request_over_256_mb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    line = b"x" * (MAX_BATCH_BYTES + 1) + b"\n"
    huge = EncodedRequest("doc-1", line, "docs.jsonl:3", "claude-sonnet-4-6", 10)
    with pytest.raises(InputError, match="256 MB per batch") as raised:
        write(tmp_path, [huge], ShardLimits())
    assert raised.value.location == "docs.jsonl:3"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.jsonl"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.text(alphabet="ab é😀中", min_size=1, max_size=120).filter(str.strip), min_size=1, max_size=60
    ),
    max_requests=st.integers(min_value=1, max_value=12),
    spare_bytes=st.integers(min_value=0, max_value=2000),
)
def test_no_input_yields_a_shard_over_the_limits(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], max_requests: int, spare_bytes: int
) -> None:
    requests = [request(n, text) for n, text in enumerate(texts)]
    max_bytes = batch_body_size(max(r.size for r in requests), 1) + spare_bytes
    shards = write(tmp_path_factory.mktemp("h"), requests, ShardLimits(max_requests, max_bytes))
    sent_ids = []
    for shard in shards:
        body = sent_body(shard)
        assert 1 <= shard.request_count <= max_requests
        assert len(body) == shard.body_bytes <= max_bytes
        sent_ids += [r["custom_id"] for r in orjson.loads(body)["requests"]]
    assert sent_ids == [r.custom_id for r in requests], "every request once, in order"
    position = 0
    # A shard closes only when the next request would not fit; the last two are evened out after.
    for shard in shards[:-2]:
        position += shard.request_count
        following = requests[position]
        assert (
            shard.request_count == max_requests
            or batch_body_size(shard.request_bytes + following.size, shard.request_count + 1) > max_bytes
        )


def test_shards_larger_than_the_write_buffer_are_written_whole(tmp_path: Path) -> None:
    requests = [request(n, "z" * 1000) for n in range(3000)]  # about 3 MB
    shards = write(tmp_path, requests, ShardLimits(max_requests=2500))
    assert [s.request_count for s in shards] == [1500, 1500]  # 2,500 + 500, evened out
    lines = b"".join(Path(str(s.path)).read_bytes() for s in shards)
    assert lines == b"".join(r.line for r in requests)


def test_shard_files_are_named_by_round_and_index(tmp_path: Path) -> None:
    folder = folder_in(tmp_path)
    with ShardWriter(folder, 2, ShardLimits(max_requests=2)) as writer:
        for each in (request(n) for n in range(5)):
            writer.add(each)
    assert [s.path for s in writer.shards] == [folder.shard_requests(2, i) for i in range(3)]
    descriptor = writer.shards[1].descriptor(str(folder.root), 2, 0.25)
    assert (descriptor.round, descriptor.index, descriptor.request_count) == (2, 1, 2)
    assert descriptor.uri == str(folder.shard_requests(2, 1))
    assert descriptor.body_bytes == writer.shards[1].body_bytes
    assert descriptor.estimated_cost_usd == 0.25


def test_a_failure_in_the_middle_leaves_no_shard_behind(tmp_path: Path) -> None:
    def requests_then_failure():
        yield from (request(n) for n in range(25))
        raise RuntimeError("source broke")

    def write_all(writer: ShardWriter) -> None:
        for each in requests_then_failure():
            writer.add(each)

    with (
        pytest.raises(RuntimeError),
        ShardWriter(folder_in(tmp_path), 0, ShardLimits(max_requests=10)) as writer,
    ):
        write_all(writer)
    assert len(writer.shards) == 3
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]


def test_a_dry_run_counts_without_writing(tmp_path: Path) -> None:
    with ShardWriter(folder_in(tmp_path), 0, ShardLimits(max_requests=4), dry_run=True) as writer:
        for each in (request(n) for n in range(10)):
            writer.add(each)
    assert [s.request_count for s in writer.shards] == [4, 4, 2]
    assert not (tmp_path / "runs").exists()


def test_tallies_by_model_for_the_estimate(tmp_path: Path) -> None:
    haiku = [request(n) for n in range(3)]
    opus = RequestRenderer(RequestTemplate(model="claude-opus-4-6", max_tokens=100)).render(
        {"id": "o", "text": "x"}, "l:1"
    )
    shard = write(tmp_path, [*haiku, opus], ShardLimits())[0]
    assert shard.groups[("claude-haiku-4-5", None, None)].requests == 3
    assert shard.groups[("claude-haiku-4-5", None, None)].max_tokens == 48
    assert shard.groups[("claude-haiku-4-5", None, None)].request_bytes == sum(r.size for r in haiku)
    assert shard.groups[("claude-opus-4-6", None, None)].max_tokens == 100


def test_an_unwritable_storage_path_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(StorageError, match=r"cannot create the folder .*runs/dag/run/claude_batch/round-0"):
        write(tmp_path, [request(1)], ShardLimits())


def test_requeued_lines_are_written_unchanged(tmp_path: Path) -> None:
    original = [request(n, "é") for n in range(3)]
    with ShardWriter(folder_in(tmp_path), 1) as writer:
        writer.add_line(original[0].line)  # the location is optional
        for n, item in enumerate(original[1:], start=2):
            writer.add_line(item.line, f"round-0/shard-00000.requests.jsonl:{n}")
    assert Path(str(writer.shards[0].path)).read_bytes() == b"".join(r.line for r in original)
    assert writer.shards[0].groups[("claude-haiku-4-5", None, None)].max_tokens == 48


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"max_requests": 0}, "max_requests_per_shard"),
        ({"max_requests": MAX_REQUESTS_PER_BATCH + 1}, "max_requests_per_shard"),
        ({"max_requests": True}, "max_requests_per_shard"),
        ({"max_bytes": MAX_BATCH_BYTES + 1}, "max_bytes_per_shard"),
        ({"max_bytes": 10}, "max_bytes_per_shard"),
    ],
)
def test_limits_beyond_the_api_are_refused(limits: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        ShardLimits(**limits)


@pytest.mark.parametrize(
    ("count", "max_requests", "sizes"),
    [(4, 3, [2, 2]), (7, 3, [3, 2, 2]), (10, 4, [4, 3, 3]), (9, 3, [3, 3, 3]), (5, 2, [2, 2, 1])],
)
def test_the_last_two_shards_are_even_and_the_order_is_the_input_s(
    tmp_path: Path, count: int, max_requests: int, sizes: list[int]
) -> None:
    requests = [request(n) for n in range(count)]
    shards = write(tmp_path, requests, ShardLimits(max_requests=max_requests))
    assert [shard.request_count for shard in shards] == sizes
    ids = [item["custom_id"] for shard in shards for item in orjson.loads(sent_body(shard))["requests"]]
    assert ids == [each.custom_id for each in requests]
    for shard in shards:
        assert len(sent_body(shard)) == shard.body_bytes
        lines = Path(str(shard.path)).read_bytes().splitlines()
        assert shard.request_bytes == sum(len(line) for line in lines)
        assert sum(group.requests for group in shard.groups.values()) == shard.request_count
        assert sum(group.request_bytes for group in shard.groups.values()) == shard.request_bytes


def test_balancing_keeps_the_byte_limit_and_the_totals(tmp_path: Path) -> None:
    """The last shard holds a long request: only what fits its byte limit moves to it."""
    short = [request(n) for n in range(6)]
    long = request(6, "y" * 3000)
    limit = batch_body_size(sum(len(each.line) - 1 for each in [short[0], long]), 2)
    shards = write(tmp_path, [*short, long], ShardLimits(max_requests=6, max_bytes=limit))
    assert sum(shard.request_count for shard in shards) == 7
    assert all(shard.body_bytes <= limit for shard in shards)
    assert [shard.request_count for shard in shards] == [5, 2]  # even would be [4, 3]: over the limit
    assert sum(group.max_tokens for shard in shards for group in shard.groups.values()) == 7 * 16


def test_a_dry_run_does_not_balance_and_writes_nothing(tmp_path: Path) -> None:
    folder = folder_in(tmp_path)
    with ShardWriter(folder, 0, ShardLimits(max_requests=3), dry_run=True) as writer:
        for n in range(4):
            writer.add(request(n))
    assert [shard.request_count for shard in writer.shards] == [3, 1]
    assert not any(Path(str(shard.path)).exists() for shard in writer.shards)
