from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from airflow_claude_batch.core.api.limits import BODY_PREFIX, BODY_SUFFIX
from airflow_claude_batch.core.build import build_step
from airflow_claude_batch.core.build.build_step import build_run
from airflow_claude_batch.core.money.estimate import EstimateOptions
from airflow_claude_batch.core.money.pricing import PRICES_ENV_VAR, PriceTable
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.sharding import ShardLimits
from airflow_claude_batch.core.requests.sources import CallableRecords, FileRecords
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.exceptions import BudgetExceededError, InputError, StorageError

DATA = Path(__file__).resolve().parents[3] / "tests" / "data"
TEMPLATE = RequestTemplate(
    model="claude-haiku-4-5", max_tokens=32, system="Label the ticket.", cache_system="5m"
)


@pytest.fixture(autouse=True)
def shipped_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRICES_ENV_VAR, raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    return RunFolder.for_run(
        tmp_path / "runs", "nightly", "scheduled__2026-01-01T00:00:00+00:00", "claude_batch"
    )


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def write_tickets(path: Path, count: int, start: int = 0) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"t-{n}", "text": f"ticket {n} text"}) + "\n"
            for n in range(start, start + count)
        )
    )
    return path


def test_a_run_is_built_into_shards_an_estimate_and_the_shard_list(folder: RunFolder, tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "tickets.jsonl", 25)
    result = build_run(FileRecords([source]), TEMPLATE, folder, limits=ShardLimits(max_requests=10))
    assert [d.request_count for d in result.shards] == [10, 8, 7]  # the last two evened out
    for descriptor in result.shards:
        assert descriptor.run_uri == str(folder.root)
        assert descriptor.round == 0
        lines = Path(descriptor.uri).read_bytes().splitlines()
        body = BODY_PREFIX + b",".join(lines) + BODY_SUFFIX
        assert len(body) == descriptor.body_bytes
        assert descriptor.estimated_cost_usd > 0
    listed = json.loads(Path(str(folder.round_dir(0) / "shards.json")).read_text())
    assert listed == result.shard_dicts()
    estimate = json.loads(Path(str(folder.estimate)).read_text())
    assert (estimate["records"], estimate["shards"]) == (25, 3)
    assert estimate["estimated_cost_usd_upper"] == pytest.approx(
        sum(d.estimated_cost_usd for d in result.shards), abs=1e-5
    )
    assert result.estimate is not None
    assert not result.reused


def test_the_shard_list_is_written_last(
    folder: RunFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[tuple[str, list[str]]] = []
    real_write_json = build_step.write_json

    def recording_write_json(path, value):  # type: ignore[no-untyped-def]
        written.append((Path(str(path)).name, files_under(Path(str(folder.root)))))
        real_write_json(path, value)

    monkeypatch.setattr(build_step, "write_json", recording_write_json)
    build_run(FileRecords([write_tickets(tmp_path / "t.jsonl", 3)]), TEMPLATE, folder)
    assert [name for name, _ in written] == ["estimate.json", "shards.json"]
    assert "round-0/shard-00000.requests.jsonl" in written[-1][1], "the shards exist before they are listed"


def test_a_rerun_returns_the_first_build_and_changes_nothing(folder: RunFolder, tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "t.jsonl", 12)
    first = build_run(FileRecords([source]), TEMPLATE, folder, limits=ShardLimits(max_requests=5))
    shard_bytes = {d.uri: Path(d.uri).read_bytes() for d in first.shards}
    write_tickets(source, 40, start=100)  # the source changed since: the run's shards must not
    again = build_run(FileRecords([source]), TEMPLATE, folder, limits=ShardLimits(max_requests=5))
    assert again.reused
    assert again.shard_dicts() == first.shard_dicts()
    assert {d.uri: Path(d.uri).read_bytes() for d in again.shards} == shard_bytes
    estimate_before = Path(str(folder.estimate)).read_bytes()
    dry = build_run(FileRecords([source]), TEMPLATE, folder, dry_run=True)
    assert dry.reused
    assert dry.shards == ()
    assert Path(str(folder.estimate)).read_bytes() == estimate_before, "a dry rerun overwrites nothing"


def test_over_budget_nothing_is_left_to_submit_but_the_figures(folder: RunFolder, tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "t.jsonl", 200)
    template = RequestTemplate(model="claude-opus-4-6", max_tokens=4000)
    with pytest.raises(BudgetExceededError, match=r"over max_cost_usd=\$0.50"):
        build_run(FileRecords([source]), template, folder, options=EstimateOptions(max_cost_usd=0.5))
    assert files_under(Path(str(folder.root))) == ["estimate.json"]
    estimate = json.loads(Path(str(folder.estimate)).read_text())
    assert estimate["estimated_cost_usd_upper"] > 0.5
    assert estimate["max_cost_usd"] == 0.5


def test_a_bad_record_after_a_full_shard_leaves_nothing_behind(folder: RunFolder, tmp_path: Path) -> None:
    source = write_tickets(tmp_path / "t.jsonl", 30)
    with source.open("a") as handle:
        handle.write('{"id": "bad id", "text": "x"}\n')
    with pytest.raises(InputError, match="'bad id'") as raised:
        build_run(FileRecords([source]), TEMPLATE, folder, limits=ShardLimits(max_requests=10))
    assert raised.value.location == "t.jsonl:31"
    assert files_under(Path(str(folder.root))) == []


def test_a_dry_run_validates_and_estimates_without_shards(folder: RunFolder, tmp_path: Path) -> None:
    result = build_run(FileRecords([DATA / "tickets.jsonl"]), TEMPLATE, folder, dry_run=True)
    assert result.shards == ()
    assert result.estimate is not None
    assert (result.estimate.records, result.estimate.shards) == (5, 1)
    assert files_under(Path(str(folder.root))) == ["estimate.json"]
    assert json.loads(Path(str(folder.estimate)).read_text())["dry_run"] is True


def test_an_unknown_model_fails_before_any_record_is_read(folder: RunFolder) -> None:
    def never_read():
        raise AssertionError("records were read")

    with pytest.raises(InputError, match="no price for model 'claude-unknown-1'"):
        build_run(CallableRecords(never_read), RequestTemplate(model="claude-unknown-1"), folder)


def test_the_token_counter_feeds_the_estimate(folder: RunFolder, tmp_path: Path) -> None:
    calls: list[dict] = []

    def count_tokens(params: dict) -> int:
        calls.append(params)
        return 50

    source = write_tickets(tmp_path / "t.jsonl", 100)
    result = build_run(FileRecords([source]), TEMPLATE, folder, count_tokens=count_tokens)
    assert result.estimate is not None
    assert result.estimate.method.startswith("count_tokens on a sample of 20")
    assert len(calls) == 20 + 2  # the sample, then the system prompt with and without
    sampled = {orjson.dumps(call["messages"]) for call in calls[:20]}
    assert len(sampled) == 20, "twenty different requests"


def test_a_custom_prices_table_is_used(folder: RunFolder, tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.json"
    prices_file.write_text(json.dumps({"models": {"claude-haiku-4-5": {"input": 0, "output": 0}}}))
    result = build_run(
        FileRecords([DATA / "tickets.jsonl"]), TEMPLATE, folder, prices=PriceTable.load(prices_file)
    )
    assert result.estimate is not None
    assert result.estimate.upper_batch_usd == 0
    assert str(prices_file) in result.estimate.price_sources


def test_an_unreadable_run_folder_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("a file, not a folder")
    folder = RunFolder.for_run(tmp_path / "runs", "dag", "run", "claude_batch")
    with pytest.raises(StorageError, match=r"cannot read .*runs/dag/run/claude_batch/round-0/shards.json"):
        build_run(FileRecords([DATA / "tickets.jsonl"]), TEMPLATE, folder)


def test_an_unwritable_storage_path_is_a_storage_error_and_leaves_no_shard(folder: RunFolder) -> None:
    Path(str(folder.estimate)).mkdir(parents=True)  # a folder where estimate.json must go
    with pytest.raises(StorageError, match=r"cannot write .*estimate.json.*check the storage path"):
        build_run(FileRecords([DATA / "tickets.jsonl"]), TEMPLATE, folder)
    assert not list(Path(str(folder.round_dir(0))).glob("*.jsonl"))


def test_duplicate_ids_across_files_stop_the_run(folder: RunFolder, tmp_path: Path) -> None:
    a = write_tickets(tmp_path / "a.jsonl", 5)
    b = write_tickets(tmp_path / "b.jsonl", 5, start=4)
    with pytest.raises(InputError, match=r"'t-4' is used twice, first at a\.jsonl:5"):
        build_run(FileRecords([a, b]), TEMPLATE, folder)
    assert files_under(Path(str(folder.root))) == []
