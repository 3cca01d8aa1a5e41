"""The build operator in a real Airflow (dag.test on SQLite), on local storage and on S3 (moto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_claude_batch.core.api.limits import BODY_PREFIX, BODY_SUFFIX
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from tests.build_parameters import build_parameters

pytestmark = pytest.mark.airflow
START = pendulum.datetime(2026, 1, 1, tz="UTC")

TICKETS = [
    {"id": "t-1", "text": "My invoice is wrong."},
    {"id": "t-2", "text": "The app crashes on upload."},
    {"id": "t-3", "text": "Können Sie helfen? 😀"},
    {"id": "t-4", "text": "Where is my order?"},
]
MORE_TICKETS = [
    {"id": "u-1", "text": "Cancel please."},
    {"id": "u-2", "text": "Thanks!"},
    {"id": "u-3", "text": "Hi"},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def task_states(dag_run: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


def test_the_operator_is_cheap_to_parse_and_templated() -> None:
    operator = ClaudeBatchBuildOperator(
        task_id="build",
        source="s3://nowhere/none/*.jsonl",
        storage="s3://nowhere/runs",
        model="claude-haiku-4-5",
    )
    for name in (
        "source",
        "storage",
        "model",
        "max_tokens",
        "system",
        "max_cost_usd",
        "dry_run",
        "expected_output_tokens",
        "custom_id_field",
        "prompt_field",
    ):
        assert name in operator.template_fields


def test_every_templated_option_renders_and_the_others_are_kept_as_given() -> None:
    names = tuple(ClaudeBatchBuildOperator.template_fields)
    schema = {"type": "object"}

    def render(record: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": record["text"]}]}

    operator = ClaudeBatchBuildOperator(
        task_id="build",
        **{name: "{{ params." + name + " }}/{{ ds }}" for name in names},
        render=render,
        output_schema=schema,
        pipeline_id="{{ ds }}",
        later_templates={"output_uri": "{{ ds }}"},
    )
    operator.render_template_fields({"params": {name: name.upper() for name in names}, "ds": "2026-11-02"})

    assert {name: getattr(operator, name) for name in names} == {
        name: f"{name.upper()}/2026-11-02" for name in names
    }
    not_rendered = {"render", "output_schema", "pipeline_id", "later_templates"}
    assert set(names) == {spec.name for spec in build_parameters()} - not_rendered
    assert (operator.render, operator.output_schema, operator.pipeline_id) == (render, schema, "{{ ds }}")
    assert operator.later_templates == {"output_uri": "{{ ds }}"}, "rendered by the build when it runs"


def test_the_options_are_airflow_keyword_arguments_default_args_and_expand_included() -> None:
    defaults = {"model": "claude-haiku-4-5", "storage": "s3://bucket/runs", "max_tokens": 64}
    with DAG("build_defaults", schedule=None, start_date=START, default_args=defaults) as dag:
        ClaudeBatchBuildOperator(task_id="build", source="s3://bucket/in.jsonl", max_tokens=32)
        mapped = ClaudeBatchBuildOperator.partial(task_id="each", storage="s3://bucket/runs").expand(
            source=["s3://bucket/a.jsonl", "s3://bucket/b.jsonl"]
        )

    build = dag.task_dict["build"]
    assert (build.model, build.storage, build.max_tokens, build.cache_system) == (
        "claude-haiku-4-5",
        "s3://bucket/runs",
        32,
        None,
    )
    assert mapped.expand_input.value["source"] == ["s3://bucket/a.jsonl", "s3://bucket/b.jsonl"]
    one = mapped.unmap({"source": "s3://bucket/b.jsonl"})
    assert (one.source, one.storage, one.max_tokens) == ("s3://bucket/b.jsonl", "s3://bucket/runs", 64)
    with pytest.raises(TypeError, match="missing keyword argument 'source'"):
        ClaudeBatchBuildOperator(task_id="no_source", storage="s3://bucket/runs")
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_token'"):
        ClaudeBatchBuildOperator.partial(task_id="typo", max_token=5).expand(source=["s3://bucket/a.jsonl"])


LOCAL_DAG = """
import json
import pendulum
from airflow.sdk import DAG, task
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator

with DAG("build_local", schedule=None, start_date=pendulum.datetime(2026, 1, 1), params={"budget": 5}) as dag:
    build = ClaudeBatchBuildOperator(
        task_id="build",
        source=INPUT_GLOB,
        storage=STORAGE,
        model="claude-haiku-4-5",
        max_tokens="{{ 16 * 4 }}",
        system="Label the ticket as billing, bug or other.",
        cache_system="1h",
        max_requests_per_shard=3,
        max_cost_usd="{{ params.budget }}",
        expected_output_tokens=8,
    )

    @task
    def receive(shard):
        with open(RECEIVED + "/" + str(shard["index"]) + ".json", "w") as handle:
            json.dump(shard, handle)

    receive.expand(shard=build.output)
"""


def test_build_on_local_storage_counts_tokens_with_the_connection_and_maps_shards(
    run_dag: Any, emulator: Any, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "in" / "a.jsonl", TICKETS)
    write_jsonl(tmp_path / "in" / "b.jsonl", MORE_TICKETS)
    received = tmp_path / "received"
    received.mkdir()
    dag_file = tmp_path / "build_local.py"
    dag_file.write_text(
        f"INPUT_GLOB = {'file://' + str(tmp_path / 'in') + '/*.jsonl'!r}\n"
        f"STORAGE = {'file://' + str(tmp_path / 'runs')!r}\n"
        f"RECEIVED = {str(received)!r}\n" + LOCAL_DAG
    )

    dag_run = run_dag(dag_file, "build_local")

    assert dag_run.state == "success"
    run_folder = tmp_path / "runs" / "build_local" / dag_run.run_id / "claude_batch"
    shards = [json.loads(p.read_text()) for p in sorted(received.glob("*.json"), key=lambda p: int(p.stem))]
    assert [shard["request_count"] for shard in shards] == [3, 2, 2]
    assert shards == json.loads((run_folder / "round-0" / "shards.json").read_text())
    sent_ids = []
    for shard in shards:
        assert set(shard) >= {"uri", "request_count", "body_bytes", "round", "index", "estimated_cost_usd"}
        assert "params" not in json.dumps(shard), "XCom carries descriptors, never requests"
        lines = Path(shard["uri"].removeprefix("file://")).read_bytes().splitlines()
        assert len(BODY_PREFIX + b",".join(lines) + BODY_SUFFIX) == shard["body_bytes"]
        requests = [json.loads(line) for line in lines]
        assert all(r["params"]["max_tokens"] == 64 for r in requests), "max_tokens was templated"
        sent_ids += [r["custom_id"] for r in requests]
    assert sent_ids == [t["id"] for t in TICKETS + MORE_TICKETS]
    estimate = json.loads((run_folder / "estimate.json").read_text())
    assert estimate["method"].startswith("count_tokens on a sample of 7")
    assert emulator.stats()["count_tokens"] == 7 + 2
    assert estimate["max_cost_usd"] == 5
    # A one-line system prompt is far under Haiku 4.5's minimum cacheable length: priced as plain input.
    assert estimate["cache_ttl"] is None
    assert any("under the model's minimum of 4,096" in warning for warning in estimate["warnings"])
    assert estimate["basis"]["kind"] == "user"
    assert estimate["prices"]["as_of"]
    assert estimate["records"] == 7
    assert emulator.stats()["batches_created"] == 0


CHECKS_DAG = """
import json
import pendulum
from airflow.sdk import DAG, task
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator

with DAG(
    "build_checks", schedule=None, start_date=pendulum.datetime(2026, 1, 1), params={"dry": True}
) as dag:
    duplicated = ClaudeBatchBuildOperator(
        task_id="duplicated", source=DUPLICATED, storage=STORAGE + "/duplicated", model="claude-haiku-4-5",
        retries=2,
    )
    over_budget = ClaudeBatchBuildOperator(
        task_id="over_budget", source=GOOD, storage=STORAGE + "/over_budget", model="claude-opus-4-6",
        max_tokens=64000, max_cost_usd=0.01, retries=2, conn_id="",  # no call at build: bytes alone
    )
    no_connection = ClaudeBatchBuildOperator(
        task_id="no_connection", source=GOOD, storage=STORAGE + "/no_connection", model="claude-opus-4-6",
        retries=2, conn_id="no_such_connection",
    )
    def tickets():
        yield from TICKET_RECORDS

    dry = ClaudeBatchBuildOperator(
        task_id="dry", source=tickets, storage=STORAGE + "/dry", model="claude-sonnet-4-6",
        dry_run="{{ params.dry }}", conn_id="no_such_connection",
    )

    @task
    def receive(shards):
        with open(RECEIVED, "w") as handle:
            json.dump(shards, handle)

    receive(dry.output)
"""


def test_bad_input_fails_without_retry_and_a_dry_run_of_a_callable_submits_nothing(
    run_dag: Any, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "good.jsonl", TICKETS)
    write_jsonl(tmp_path / "dup" / "a.jsonl", TICKETS)
    write_jsonl(tmp_path / "dup" / "b.jsonl", [{"id": "t-3", "text": "again"}])
    dag_file = tmp_path / "build_checks.py"
    dag_file.write_text(
        f"GOOD = {str(tmp_path / 'good.jsonl')!r}\n"
        f"DUPLICATED = {str(tmp_path / 'dup' / '*.jsonl')!r}\n"
        f"STORAGE = {str(tmp_path / 'runs')!r}\n"
        f"RECEIVED = {str(tmp_path / 'received.json')!r}\n"
        f"TICKET_RECORDS = {TICKETS!r}\n" + CHECKS_DAG
    )

    dag_run = run_dag(dag_file, "build_checks")

    tis = task_states(dag_run)
    for task_id in ("duplicated", "over_budget", "no_connection"):
        assert tis[task_id].state == "failed"
        assert tis[task_id].try_number == 1, f"{task_id}: bad input must not be retried"
    assert tis["dry"].state == "success"
    assert json.loads((tmp_path / "received.json").read_text()) == []

    def files(task_id: str) -> list[str]:
        run_folder = tmp_path / "runs" / task_id / "build_checks" / dag_run.run_id / "claude_batch"
        return sorted(str(p.relative_to(run_folder)) for p in run_folder.rglob("*") if p.is_file())

    def estimate(task_id: str) -> dict[str, Any]:
        return json.loads(
            (
                tmp_path
                / "runs"
                / task_id
                / "build_checks"
                / dag_run.run_id
                / "claude_batch"
                / "estimate.json"
            ).read_text()
        )

    assert files("duplicated") == []
    assert files("no_connection") == [], "a missing connection fails before anything is read or written"
    assert files("over_budget") == ["estimate.json"], "over budget: the figures, nothing to submit"
    assert estimate("over_budget")["estimated_cost_usd_upper"] > 0.01
    assert files("dry") == ["estimate.json"]
    assert estimate("dry")["dry_run"] is True
    assert estimate("dry")["records"] == len(TICKETS)
    # The connection does not exist: the estimate falls back to the local method and says so.
    assert estimate("dry")["method"].startswith("local: UTF-8 bytes")


# --- S3 through moto and an AWS connection ------------------------------------------------------------


S3_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator

with DAG("build_s3", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    ClaudeBatchBuildOperator(
        task_id="build",
        source="s3://tickets-in/2026-01-*/*",
        source_conn_id="aws_default",
        storage="s3://claude-runs/support",
        storage_conn_id="aws_default",
        custom_id_field="ticket_id",
        prompt_field="body",
        model="claude-sonnet-4.6",
        max_tokens=32,
        max_requests_per_shard=4,
        conn_id="",  # no call to the API at build: the estimate from bytes alone
    )
"""


def test_build_reads_from_s3_and_writes_shards_to_s3(run_dag: Any, s3: Any, tmp_path: Path) -> None:
    jsonl = "".join(json.dumps({"ticket_id": t["id"], "body": t["text"]}) + "\n" for t in TICKETS)
    s3.put_object(Bucket="tickets-in", Key="2026-01-01/tickets.jsonl", Body=jsonl.encode())
    csv_rows = "ticket_id,body\n" + "".join(f'{t["id"]},"{t["text"]}, really"\n' for t in MORE_TICKETS)
    s3.put_object(Bucket="tickets-in", Key="2026-01-02/tickets.csv", Body=b"\xef\xbb\xbf" + csv_rows.encode())
    dag_file = tmp_path / "build_s3.py"
    dag_file.write_text(S3_DAG)

    dag_run = run_dag(dag_file, "build_s3")

    assert dag_run.state == "success"
    prefix = f"support/build_s3/{dag_run.run_id}/claude_batch"
    listed = json.loads(
        s3.get_object(Bucket="claude-runs", Key=f"{prefix}/round-0/shards.json")["Body"].read()
    )
    assert [shard["request_count"] for shard in listed] == [4, 3]
    ids = []
    for shard in listed:
        assert shard["uri"].startswith("s3://aws_default@claude-runs/")
        key = shard["uri"].split("@claude-runs/", 1)[1]
        body = s3.get_object(Bucket="claude-runs", Key=key)["Body"].read()
        lines = body.splitlines()
        assert len(BODY_PREFIX + b",".join(lines) + BODY_SUFFIX) == shard["body_bytes"]
        ids += [json.loads(line)["custom_id"] for line in lines]
    assert ids == [t["id"] for t in TICKETS + MORE_TICKETS]
    last = json.loads(
        s3.get_object(Bucket="claude-runs", Key=listed[1]["uri"].split("@claude-runs/", 1)[1])["Body"]
        .read()
        .splitlines()[-1]
    )
    assert last["params"]["messages"][0]["content"] == "Hi, really"
    assert last["params"]["model"] == "claude-sonnet-4.6", "the model name is sent as the user wrote it"
    estimate = json.loads(s3.get_object(Bucket="claude-runs", Key=f"{prefix}/estimate.json")["Body"].read())
    assert estimate["records"] == 7
