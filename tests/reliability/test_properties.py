"""Property-based checks that no input the builder accepts makes a batch the API would refuse.

- custom_id: the builder, the shared validation and the emulator accept exactly the ids the API's
  rule ``^[a-zA-Z0-9_-]{1,64}$`` accepts (read as a whole-string match: no trailing line break);
- shards: for generated records, templates, render callables and limits, every shard the build writes
  is sent (by the hook's streamed body) byte for byte as the anthropic SDK would send it, its size is
  the descriptor's ``body_bytes``, it is within the count and byte limits, the emulator's own create
  accepts it, every request is in exactly one shard in input order, and a shard is closed only when
  the next request would not fit.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from anthropic._utils._json import openapi_dumps
from anthropic._utils._prepare import prepare_request_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.api.limits import batch_body_size
from airflow_claude_batch.core.api.validation import custom_id_problem
from airflow_claude_batch.core.build.build_step import build_run
from airflow_claude_batch.core.requests.rendering import RequestRenderer, RequestTemplate
from airflow_claude_batch.core.requests.sharding import ShardLimits
from airflow_claude_batch.core.requests.sources import CallableRecords
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.submit.create_body import iter_batch_body
from airflow_claude_batch.emulator.checks.errors import ApiError
from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.emulator.store.engine import Engine
from airflow_claude_batch.emulator.store.faults import BatchFaults
from airflow_claude_batch.exceptions import InputError

#: The API's rule, written independently of the package's constant.
API_RULE = re.compile(r"\A[a-zA-Z0-9_-]{1,64}\Z")
MODEL = "claude-haiku-4-5"
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

valid_ids = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)
candidate_ids = st.one_of(
    st.text(max_size=80),
    valid_ids,
    st.from_regex(r"[a-zA-Z0-9_-]{60,70}", fullmatch=True),  # around the length limit
    valid_ids.map(lambda text: text + "\n"),  # the "$" trap: a line break after a valid id
    valid_ids.flatmap(lambda text: st.sampled_from([" ", ".", "/", "é", "\t", "\x00"]).map(text.__add__)),
)
tricky = st.sampled_from(["\x00", "\x1f", "\x7f", "\u2028", "\ufeff", "\\", '"', "\n", "\r", "😀", "é", "中"])
texts = (
    st.lists(st.one_of(tricky, st.characters(exclude_categories=("Cs",))), min_size=1, max_size=60)
    .map("".join)
    .filter(lambda text: not text.isspace())  # a blank prompt is refused, with its record named
)


def _emulator_accepts(custom_id: str) -> bool:
    body = json.dumps(
        {
            "requests": [
                {
                    "custom_id": custom_id,
                    "params": {
                        "model": MODEL,
                        "max_tokens": 4,
                        "messages": [{"role": "user", "content": "x"}],
                    },
                }
            ]
        },
        ensure_ascii=False,
    ).encode()
    try:
        Engine(EmulatorConfig()).create(body, "key", "http://127.0.0.1/", BatchFaults)
    except ApiError:
        return False
    return True


@PROPERTY_SETTINGS
@given(custom_id=candidate_ids)
def test_builder_validation_and_emulator_accept_exactly_the_api_rule(custom_id: str) -> None:
    renderer = RequestRenderer(RequestTemplate(model=MODEL))
    api_accepts = API_RULE.match(custom_id) is not None

    if api_accepts:
        assert renderer.custom_id({"id": custom_id}, "records.jsonl:1") == custom_id
    else:
        with pytest.raises(InputError) as refused:
            renderer.custom_id({"id": custom_id}, "records.jsonl:1")
        assert refused.value.location == "records.jsonl:1"
    assert (custom_id_problem(custom_id) is None) == api_accepts
    assert _emulator_accepts(custom_id) == api_accepts


# --- shards --------------------------------------------------------------------------------------------

extra_params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.floats(min_value=0, max_value=1),
        "top_p": st.sampled_from([1e-05, 0.5, 0.999999, 1.0]),  # 1e-05: written differently by orjson
        "stop_sequences": st.lists(texts, max_size=3),
        "metadata": st.fixed_dictionaries({"user_id": texts}),
    },
).map(
    # The API refuses temperature with top_p on today's models (core/api/request_rules.py): one or the other.
    lambda extra: {key: value for key, value in extra.items() if key != "top_p" or "temperature" not in extra}
)
record_batches = st.lists(st.tuples(texts, extra_params), min_size=1, max_size=40).map(
    lambda items: [
        {"id": f"r-{n:04d}", "text": text, "extra": extra} for n, (text, extra) in enumerate(items)
    ]
)


def _render(record: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": record["text"]}], **record["extra"]}


def _sdk_body(lines: list[bytes]) -> bytes:
    """What the anthropic SDK sends for ``batches.create(requests=...)`` of these requests."""
    return openapi_dumps(
        prepare_request_data({"requests": [json.loads(line) for line in lines]}, location="body")
    )


@PROPERTY_SETTINGS
@given(
    rows=record_batches,
    use_render=st.booleans(),
    system=st.one_of(st.none(), texts),
    max_requests=st.integers(min_value=1, max_value=12),
    spare_bytes=st.integers(min_value=0, max_value=3000),
)
def test_no_generated_input_yields_a_shard_the_api_would_refuse(
    rows: list[dict[str, Any]], use_render: bool, system: str | None, max_requests: int, spare_bytes: int
) -> None:
    template = RequestTemplate(
        model=MODEL, max_tokens=16, system=system, render=_render if use_render else None
    )
    renderer = RequestRenderer(template)
    sizes = [renderer.render(row, "x").size for row in rows]
    max_bytes = batch_body_size(max(sizes), 1) + spare_bytes
    limits = ShardLimits(max_requests, max_bytes)
    with tempfile.TemporaryDirectory() as folder:
        result = build_run(CallableRecords(lambda: rows), template, RunFolder(Path(folder)), limits=limits)
        sent_ids: list[str] = []
        for shard in result.shards:
            path = Path(shard.uri)
            lines = path.read_bytes().splitlines()
            body = b"".join(
                iter_batch_body(
                    [path.read_bytes()],
                    request_count=shard.request_count,
                    body_bytes=shard.body_bytes,
                    source=shard.uri,
                )
            )
            assert body == _sdk_body(lines), "the streamed body is the SDK's, byte for byte"
            assert len(body) == shard.body_bytes <= max_bytes
            assert 1 <= shard.request_count <= max_requests
            engine = Engine(EmulatorConfig(max_batch_bytes=max_bytes, max_requests=max_requests))
            assert (
                engine.create(body, "key", "http://127.0.0.1/", BatchFaults)["processing_status"]
                == "in_progress"
            )
            sent_ids += [json.loads(line)["custom_id"] for line in lines]
    assert sent_ids == [row["id"] for row in rows], "every request once, in input order"
    shards = result.shards
    position = 0
    for shard in shards[:-2]:  # a shard closes only when the next request would not fit
        position += shard.request_count
        assert shard.request_count == max_requests or _grown(shard, sizes[position]) > max_bytes
    if len(shards) >= 2:  # the last two are balanced: the earlier one gives lines while the later takes them
        earlier, last = shards[-2], shards[-1]
        moved_next = sizes[position + earlier.request_count - 1]  # the earlier shard's last request
        assert earlier.request_count - last.request_count <= 1 or _grown(last, moved_next) > max_bytes


def _grown(shard: Any, size: int) -> int:
    """The create body of ``shard`` with one more request of ``size`` bytes."""
    return batch_body_size(
        shard.body_bytes - batch_body_size(0, shard.request_count) + size, shard.request_count + 1
    )


def test_a_shard_of_exactly_the_byte_limit_is_accepted_and_one_byte_more_is_not(
    make_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP: the size the build measured is the size the emulator received, at the limit."""
    from airflow_claude_batch.hooks.claude import ClaudeBatchHook
    from tests.fixtures.emulator import DEFAULT_CONN_ENV

    rows = [{"id": f"r-{n}", "text": "é😀 " * (n + 1)} for n in range(6)]
    template = RequestTemplate(model=MODEL, max_tokens=16)
    probe = build_run(CallableRecords(lambda: rows), template, RunFolder(tmp_path / "probe"))
    limit = probe.shards[0].body_bytes  # all six requests, to the byte
    emulator = make_emulator(max_batch_bytes=limit)
    monkeypatch.setenv(DEFAULT_CONN_ENV, emulator.connection_json)

    exact = build_run(
        CallableRecords(lambda: rows),
        template,
        RunFolder(tmp_path / "exact"),
        limits=ShardLimits(max_bytes=limit),
    )
    tight = build_run(
        CallableRecords(lambda: rows),
        template,
        RunFolder(tmp_path / "tight"),
        limits=ShardLimits(max_bytes=limit - 1),
    )
    hook = ClaudeBatchHook()
    for shard in (*exact.shards, *tight.shards):
        hook.create_batch_from_file(Path(shard.uri), shard.request_count, shard.body_bytes)
        assert emulator.stats()["last_create_body_bytes"] == shard.body_bytes

    assert [shard.body_bytes for shard in exact.shards] == [limit]
    assert len(tight.shards) == 2
    assert emulator.stats()["batches_created"] == 3
    # The same six requests with one more byte in a prompt: one byte over what the emulator takes.
    over = tmp_path / "one-byte-over.jsonl"
    over.write_bytes(Path(exact.shards[0].uri).read_bytes().replace(b'"content":"', b'"content":" ', 1))
    with pytest.raises(InputError, match=r"HTTP 413"):
        hook.create_batch_from_file(over, len(rows), limit + 1)
    assert emulator.stats()["last_create_body_bytes"] == limit + 1
    assert emulator.stats()["batches_created"] == 3
