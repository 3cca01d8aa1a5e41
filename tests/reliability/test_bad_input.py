"""Invariant 5: bad input fails before any spend, with a message naming the record and the fix.

Two kinds of bad input:

- files of the corpus in ``tests/data/bad/``, each with a sidecar ``<case>.expect.json`` saying what the
  user must read: the record's location (``file:line``, or the file for file-wide problems), the
  problem and the fix;
- settings and render callables, in the table below.

Every case runs the whole run (build, then submit and the rest if the build let anything through); it
must fail at the build with ``AirflowFailException`` (no retry), write no shard, and send nothing to the
API: not a create, not even a token count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api.limits import MAX_BATCH_BYTES
from tests.reliability.harness import RunHarness, records, write_jsonl

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad"
SIDECARS = sorted(CORPUS.glob("*.expect.json"))
_LINE_LOCATION = re.compile(r":\d+$")


def assert_refused_before_spend(run: RunHarness, emulator: Any, figures: Any) -> str:
    """Run the whole run; return the message of the build's refusal, after checking nothing was sent."""
    with pytest.raises(AirflowFailException) as refused:
        run.run()
    figures.add("bad_inputs_tried")
    stats = emulator.stats()
    assert stats["creates_received"] == 0
    assert stats["count_tokens"] == 0
    assert run.attempts.runs == {"build": 1}  # refused for good: no retry, no later task
    assert not list(run.storage.rglob("*.requests.jsonl"))
    assert not list(run.storage.rglob("shards.json"))
    return str(refused.value)


def assert_names(message: str, location: str | None, says: str, fix: str) -> None:
    if location is not None and _LINE_LOCATION.search(location):
        assert message.startswith(f"{location}: "), f"{message!r} does not start with {location!r}"
    elif location is not None:
        assert location in message, f"{message!r} does not name {location!r}"
    assert says in message, f"{message!r} does not say {says!r}"
    assert fix in message, f"{message!r} does not give the fix {fix!r}"


def test_every_corpus_file_has_a_sidecar_and_every_sidecar_a_file() -> None:
    described = {json.loads(sidecar.read_text())["source"] for sidecar in SIDECARS}
    inputs = {
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.is_file() and not path.name.endswith(".expect.json") and path.name != "README.md"
    }
    assert {source for source in described if "*" not in source} | {
        str(path.relative_to(CORPUS)) for source in described if "*" in source for path in CORPUS.glob(source)
    } == inputs


@pytest.mark.parametrize(
    "sidecar", SIDECARS, ids=[path.name.removesuffix(".expect.json") for path in SIDECARS]
)
def test_a_bad_file_is_refused_before_spend_naming_the_record_and_the_fix(
    sidecar: Path, faulty_emulator: Any, figures: Any, tmp_path: Path
) -> None:
    expected = json.loads(sidecar.read_text())
    run = RunHarness(storage=tmp_path / "storage", source=f"file://{CORPUS}/{expected['source']}")

    message = assert_refused_before_spend(run, faulty_emulator, figures)

    assert_names(message, expected["location"], expected["says"], expected["fix"])


def test_a_utf8_byte_order_mark_at_the_start_is_accepted(faulty_emulator: Any, tmp_path: Path) -> None:
    source = tmp_path / "bom.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + b'{"id": "r-1", "text": "Fine"}\n')
    run = RunHarness(storage=tmp_path / "storage", source=f"file://{source}")
    assert run.run()["dispositions"]["succeeded"] == 1


# --- settings and render callables -------------------------------------------------------------------


def _yield(*rows: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
    def tickets() -> list[dict[str, Any]]:
        return list(rows)

    return tickets


def _render(params: Any) -> Callable[[dict[str, Any]], Any]:
    def render(record: dict[str, Any]) -> Any:
        if record["id"] != "r-002":
            return {"messages": [{"role": "user", "content": record["text"]}]}
        return params(record) if callable(params) else params

    return render


def _render_raising(record: dict[str, Any]) -> Any:
    raise KeyError("subject")


@dataclass(frozen=True)
class BadSetting:
    """A run whose settings or render callable are wrong.

    :param build_kwargs: the build's parameters.
    :param location: the record the message names (``tickets.jsonl:3``), or ``None`` for a setting.
    :param says: the problem, as the message says it.
    :param fix: the fix, as the message says it.
    """

    build_kwargs: dict[str, Any]
    location: str | None
    says: str
    fix: str


TURN = [{"role": "user", "content": "Hello"}]
BAD_SETTINGS = {
    "stream_true": BadSetting(
        {"render": _render({"messages": TURN, "stream": True})},
        "tickets.jsonl:3",
        "params.stream is true",
        "remove 'stream'",
    ),
    "max_tokens_as_text_in_params": BadSetting(
        {"render": _render({"messages": TURN, "max_tokens": "64"})},
        "tickets.jsonl:3",
        "params.max_tokens must be a whole number >= 1, got '64'",
        "whole number",
    ),
    "messages_as_text_in_params": BadSetting(
        {"render": _render({"messages": "Hello"})},
        "tickets.jsonl:3",
        "params.messages must be a non-empty list",
        "{role, content} turns",
    ),
    "model_as_number_in_params": BadSetting(
        {"render": _render({"messages": TURN, "model": 4})},
        "tickets.jsonl:3",
        "params.model must be a model name, got 4",
        "model name",
    ),
    "a_set_in_params": BadSetting(
        {"render": _render({"messages": TURN, "stop_sequences": {"END"}})},
        "tickets.jsonl:3",
        "not plain JSON",
        "return only dicts, lists, strings",
    ),
    "nan_in_params": BadSetting(
        {"render": _render({"messages": TURN, "temperature": float("nan")})},
        "tickets.jsonl:3",
        "not valid JSON",
        "use a finite number",
    ),
    "render_returns_none": BadSetting(
        {"render": _render(None)}, "tickets.jsonl:3", "render returned nothing", "return the Messages params"
    ),
    "render_returns_empty_dict": BadSetting(
        {"render": _render({})}, "tickets.jsonl:3", "render returned nothing", "filter the record out"
    ),
    "render_returns_whole_request": BadSetting(
        {"render": _render({"custom_id": "x", "params": {"messages": TURN}})},
        "tickets.jsonl:3",
        "render returned a whole request",
        "return only the params",
    ),
    "render_raises": BadSetting(
        {"render": _render_raising}, "tickets.jsonl:1", "render failed: KeyError", "fix the render callable"
    ),
    "negative_budget": BadSetting(
        {"max_cost_usd": -5}, None, "max_cost_usd is negative (-5)", "or None for no limit"
    ),
    "budget_as_text": BadSetting({"max_cost_usd": "ten"}, None, "max_cost_usd must be a number", "number"),
    "zero_max_tokens": BadSetting({"max_tokens": 0}, None, "max_tokens must be a whole number >= 1", ">= 1"),
    "cache_without_system": BadSetting(
        {"cache_system": "1h"}, None, "cache_system is set but system is empty", "set system="
    ),
    "unknown_cache_ttl": BadSetting(
        {"system": "Be brief.", "cache_system": "1d"}, None, "cache_system must be '5m', '1h' or None", "'1h'"
    ),
    "too_many_requests_per_shard": BadSetting(
        {"max_requests_per_shard": 100_001}, None, "max_requests_per_shard must be a whole number", "100,000"
    ),
    "shard_bytes_over_the_api_limit": BadSetting(
        {"max_bytes_per_shard": MAX_BATCH_BYTES + 1}, None, "max_bytes_per_shard must be", "256 MB"
    ),
    "unknown_source_format": BadSetting(
        {"source_format": "xlsx"}, None, "source_format 'xlsx' is not one of", "jsonl, csv, parquet"
    ),
    "lone_surrogate_from_a_callable": BadSetting(
        {"source": _yield({"id": "r-1", "text": "fine"}, {"id": "r-2", "text": "bad \ud800 text"})},
        "tickets():2",
        "lone UTF-16 surrogate",
        "fix the text's encoding",
    ),
    "callable_yields_a_list": BadSetting(
        {"source": _yield({"id": "r-1", "text": "fine"}, ["r-2", "text"])},  # type: ignore[arg-type]
        "tickets():2",
        "the source yielded a list, not a dict",
        "yield one dict per record",
    ),
    # The API's request rules (core/api/request_rules.py): the whole run stops at the build, nothing sent.
    "prefill_on_claude_4_6": BadSetting(
        {
            "render": _render(
                {"model": "claude-sonnet-4-6", "messages": [*TURN, {"role": "assistant", "content": "{"}]}
            )
        },
        "tickets.jsonl:3",
        "rule 'prefill'",
        "end with the user turn",
    ),
    "raw_schema_in_render": BadSetting(
        {
            "render": _render(
                {
                    "messages": TURN,
                    "output_config": {
                        "format": {
                            "type": "json_schema",
                            "schema": {
                                "type": "object",
                                "properties": {"n": {"type": "integer", "minimum": 1}},
                                "additionalProperties": False,
                            },
                        }
                    },
                }
            )
        },
        "tickets.jsonl:3",
        "output_config.format.schema.properties.n.minimum: 'minimum' is not supported",
        "anthropic.transform_schema",
    ),
    "five_cache_breakpoints": BadSetting(
        {
            "render": _render(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": f"part {n}", "cache_control": {"type": "ephemeral"}}
                                for n in range(4)
                            ],
                        }
                    ],
                    "cache_control": {"type": "ephemeral"},
                }
            )
        },
        "tickets.jsonl:3",
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        "a top-level cache_control counts as one",
    ),
    "source_template_renders_to_nothing": BadSetting(
        {"source": ""}, None, "source must be a URI, a list of URIs or a callable, got ''", "a URI"
    ),
    "model_template_renders_to_nothing": BadSetting({"model": ""}, None, "model is not set", "pass model="),
    "glob_matching_nothing": BadSetting(
        {"source": "GLOB"}, None, "matches '*.parquet'", "check the source URI, its wildcards"
    ),
    "missing_source_file": BadSetting({"source": "MISSING"}, None, "does not exist", "check the source URI"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_a_bad_setting_or_render_is_refused_before_spend_with_the_fix(
    case: str, faulty_emulator: Any, figures: Any, tmp_path: Path
) -> None:
    bad = BAD_SETTINGS[case]
    kwargs = dict(bad.build_kwargs)
    source: Any = f"file://{write_jsonl(tmp_path / 'in' / 'tickets.jsonl', records(4))}"
    given = kwargs.pop("source", None)
    if given == "GLOB":
        source = f"file://{tmp_path}/in/*.parquet"
    elif given == "MISSING":
        source = f"file://{tmp_path}/in/absent.jsonl"
    elif given is not None:
        source = given
    run = RunHarness(storage=tmp_path / "storage", source=source, build_kwargs=kwargs)

    message = assert_refused_before_spend(run, faulty_emulator, figures)

    assert_names(message, bad.location, bad.says, bad.fix)


# --- a single request over the size limit --------------------------------------------------------------


def _write_with_one_huge_record(path: Path, text_bytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(b'{"id": "small-1", "text": "fine"}\n{"id": "huge-1", "text": "')
        block = b"a" * (1 << 20)
        for _ in range(text_bytes >> 20):
            out.write(block)
        out.write(b"a" * (text_bytes % (1 << 20)) + b'"}\n{"id": "small-3", "text": "fine"}\n')


def test_a_request_over_a_small_shard_limit_names_the_record_and_both_fixes(
    faulty_emulator: Any, figures: Any, tmp_path: Path
) -> None:
    """The ~300 MB case scaled down: the same check against a small ``max_bytes_per_shard``."""
    source = tmp_path / "in" / "documents.jsonl"
    _write_with_one_huge_record(source, text_bytes=300_000)
    run = RunHarness(
        storage=tmp_path / "storage", source=f"file://{source}", build_kwargs={"max_bytes_per_shard": 250_000}
    )

    message = assert_refused_before_spend(run, faulty_emulator, figures)

    assert_names(
        message,
        "documents.jsonl:2",
        "request 'huge-1' alone makes a 300,",
        "raise max_bytes_per_shard (at most 255,998,976) or shorten the prompt",
    )


def test_a_request_over_the_api_limit_of_256_mb_is_refused(
    faulty_emulator: Any, figures: Any, tmp_path: Path
) -> None:
    """The real limit, once: a 300 MB record (about 1.5 s and 1.5 GB of memory to read it)."""
    source = tmp_path / "in" / "documents.jsonl"
    _write_with_one_huge_record(source, text_bytes=300_000_000)
    run = RunHarness(storage=tmp_path / "storage", source=f"file://{source}")

    message = assert_refused_before_spend(run, faulty_emulator, figures)

    assert_names(
        message,
        "documents.jsonl:2",
        "over the 255,998,976-byte limit",
        "the API takes at most 256 MB per batch",
    )
