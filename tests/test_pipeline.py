"""The pipeline factory: the tasks it wires, and how a run flows through them when rounds are empty,
when a run may not requeue, and when a fanout fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pendulum
import pytest
from airflow.sdk import DAG, Asset, ObjectStoragePath, TriggerRule
from airflow.sdk.definitions.mappedoperator import MappedOperator

from airflow_claude_batch.core.requests.marker import is_marker
from airflow_claude_batch.core.submit.state import read_state
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from airflow_claude_batch.pipeline import MAX_ROUNDS, _within_requeue_limit, claude_batch_pipeline
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from tests.build_parameters import build_parameters

START = pendulum.datetime(2026, 1, 1, tz="UTC")
SOURCE = {"source": "file:///in.jsonl", "storage": "file:///runs"}


def make_dag(dag_id: str = "pipeline_shape", **pipeline_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        claude_batch_pipeline(source="file:///in.jsonl", storage="file:///runs", **pipeline_kwargs)
    return dag


def round_task_ids(rounds: int, *, gates: bool = False) -> set[str]:
    ids = set()
    for r in range(rounds):
        ids |= {f"claude_batch.round_{r}.{step}" for step in ("submit", "wait", "fanout")}
        if r < rounds - 1:
            ids.add(f"claude_batch.round_{r}.requeue")
            if gates:
                ids.add(f"claude_batch.round_{r}.may_requeue")
    return ids


# --- the wiring ------------------------------------------------------------------------------------------


def test_three_rounds_wire_build_rounds_and_report() -> None:
    dag = make_dag(max_rounds=3)

    assert set(dag.task_dict) == {"claude_batch.build", "claude_batch.report"} | round_task_ids(3)
    assert isinstance(dag.task_dict["claude_batch.build"], ClaudeBatchBuildOperator)
    for r in range(3):
        for step in ("submit", "wait", "fanout"):
            assert isinstance(dag.task_dict[f"claude_batch.round_{r}.{step}"], MappedOperator)
    assert dag.task_dict["claude_batch.round_0.wait"].operator_class is ClaudeBatchSensor
    assert isinstance(dag.task_dict["claude_batch.round_1.requeue"], ClaudeBatchRequeueOperator)


def test_each_round_maps_over_the_previous_step_output() -> None:
    dag = make_dag(max_rounds=2)
    tasks = dag.task_dict

    def mapped_from(task_id: str) -> str:
        expand_input = tasks[task_id].expand_input.value["shard"]
        return expand_input.operator.task_id

    assert mapped_from("claude_batch.round_0.submit") == "claude_batch.build"
    assert mapped_from("claude_batch.round_0.wait") == "claude_batch.round_0.submit"
    assert mapped_from("claude_batch.round_0.fanout") == "claude_batch.round_0.wait"
    assert tasks["claude_batch.round_0.requeue"].shards.operator.task_id == "claude_batch.round_0.fanout"
    assert mapped_from("claude_batch.round_1.submit") == "claude_batch.round_0.requeue"


def test_the_report_runs_unless_something_failed_and_waits_for_every_round() -> None:
    dag = make_dag(max_rounds=3, outlets=[Asset("labels")])
    report = dag.task_dict["claude_batch.report"]

    assert isinstance(report, ClaudeBatchReportOperator)
    assert report.trigger_rule == TriggerRule.NONE_FAILED
    assert report.upstream_task_ids == {
        "claude_batch.build",
        "claude_batch.round_0.fanout",
        "claude_batch.round_0.requeue",
        "claude_batch.round_1.fanout",
        "claude_batch.round_1.requeue",
        "claude_batch.round_2.fanout",
    }
    assert [asset.name for asset in report.outlets] == ["labels"]
    assert report.max_rounds == 3


def test_one_round_has_no_requeue() -> None:
    dag = make_dag(max_rounds=1)
    assert set(dag.task_dict) == {"claude_batch.build", "claude_batch.report"} | round_task_ids(1)


@pytest.mark.parametrize("rounds", [0, MAX_ROUNDS + 1])
def test_rounds_out_of_range_are_refused(rounds: int) -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        make_dag(max_rounds=rounds)


def test_deferrable_none_keeps_the_sensor_default() -> None:
    default_wait = make_dag("pipeline_default").task_dict["claude_batch.round_0.wait"]
    deferred_wait = make_dag("pipeline_deferred", deferrable=True).task_dict["claude_batch.round_0.wait"]

    assert "deferrable" not in default_wait.partial_kwargs
    assert deferred_wait.partial_kwargs["deferrable"] is True


def test_build_parameters_pass_through_unchanged() -> None:
    dag = make_dag(
        model="{{ params.model }}",
        max_tokens=77,
        system="Labels: a, b",
        cache_system="1h",
        max_cost_usd="{{ params.budget }}",
        dry_run="{{ params.dry_run }}",
        custom_id_field="ticket_id",
        prompt_field="body",
    )
    build = dag.task_dict["claude_batch.build"]
    assert (build.model, build.max_tokens, build.system, build.cache_system) == (
        "{{ params.model }}",
        77,
        "Labels: a, b",
        "1h",
    )
    assert (build.max_cost_usd, build.dry_run) == ("{{ params.budget }}", "{{ params.dry_run }}")
    assert (build.custom_id_field, build.prompt_field) == ("ticket_id", "body")


def test_every_build_option_reaches_the_build_task_as_given() -> None:
    given: dict[str, Any] = {
        spec.name: "{{ params." + spec.name + " }}" for spec in build_parameters() if spec.templated
    }
    given |= {"render": lambda record: {"messages": []}, "output_schema": {"type": "object"}}
    assert set(given) == {spec.name for spec in build_parameters()} - {"pipeline_id", "later_templates"}
    with DAG("pipeline_options", schedule=None, start_date=START) as dag:
        claude_batch_pipeline("labels", **given, output_uri="s3://out/{{ ds }}.jsonl", requeue_rounds=1)

    build = dag.task_dict["labels.build"]
    assert {name: getattr(build, name) for name in given} == given
    assert build.pipeline_id == "labels"
    # The later tasks' templates, for the build to render before any spend (not the plain number).
    assert build.later_templates == {"output_uri": "s3://out/{{ ds }}.jsonl"}
    report = dag.task_dict["labels.report"]
    assert (report.storage, report.prices_file) == (given["storage"], given["prices_file"])
    requeue = dag.task_dict["labels.round_0.requeue"]
    assert (requeue.retry_errored_sync, requeue.max_requests_per_shard, requeue.output_schema) == (
        given["retry_errored_sync"],
        given["max_requests_per_shard"],
        given["output_schema"],
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"storage": "file:///runs"}, "missing a required argument: 'source'"),
        ({**SOURCE, "pipeline_id": "mine"}, "got an unexpected keyword argument 'pipeline_id'"),
        ({**SOURCE, "max_token": 5}, "got an unexpected keyword argument 'max_token'"),
    ],
)
def test_a_missing_or_unknown_argument_is_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    with DAG("pipeline_refused", schedule=None, start_date=START), pytest.raises(TypeError) as raised:
        claude_batch_pipeline(**kwargs)
    assert str(raised.value) == f"claude_batch_pipeline() {message}"


def test_a_requeue_limit_adds_a_gate_before_each_requeue() -> None:
    dag = make_dag(max_rounds=3, requeue_rounds="{{ params.requeue_rounds }}")

    assert set(dag.task_dict) == {"claude_batch.build", "claude_batch.report"} | round_task_ids(3, gates=True)
    gate = dag.task_dict["claude_batch.round_1.may_requeue"]
    assert gate.upstream_task_ids == {"claude_batch.round_1.fanout"}
    assert gate.downstream_task_ids == {"claude_batch.round_1.requeue"}
    # Only the requeue is skipped directly; the report keeps its own trigger rule.
    assert gate.ignore_downstream_trigger_rules is False


@pytest.mark.parametrize(
    ("round_index", "limit", "allowed"),
    [(0, 0, False), (0, 1, True), (1, "1", False), (1, "2", True), (2, 2, False)],
)
def test_requeue_limit(round_index: int, limit: int | str, allowed: bool) -> None:
    assert _within_requeue_limit(round_index, limit) is allowed


def test_a_requeue_limit_that_is_not_a_number_says_so() -> None:
    with pytest.raises(ValueError, match="requeue_rounds must be a whole number"):
        _within_requeue_limit(0, "two")


def test_the_group_chains_like_a_task() -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG("pipeline_chain", schedule=None, start_date=START) as dag:
        before = EmptyOperator(task_id="before")
        after = EmptyOperator(task_id="after")
        before >> claude_batch_pipeline(source="file:///in.jsonl", storage="file:///runs") >> after

    assert dag.task_dict["claude_batch.build"].upstream_task_ids == {"before"}
    assert after.upstream_task_ids == {"claude_batch.report"}


# --- runs ------------------------------------------------------------------------------------------------

RUN_DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.pipeline import claude_batch_pipeline

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:
    claude_batch_pipeline(
        source={source!r},
        storage={storage!r},
        model="claude-haiku-4-5",
        max_tokens=32,
        system="Answer with one word. Labels: yes, no",
        max_rounds=2,
        poll_interval=0.5,
        output_uri={output!r},
        **{extra},
    )
"""


def write_run_dag(tmp_path: Path, dag_id: str, records: int, **extra: Any) -> tuple[Path, Path]:
    source = tmp_path / "records.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps({"id": f"r-{i:04d}", "text": f"yes or no {i}"}) + b"\n" for i in range(records))
    )
    storage = tmp_path / "runs"
    dag_file = tmp_path / f"{dag_id}.py"
    dag_file.write_text(
        RUN_DAG_SOURCE.format(
            dag_id=dag_id,
            source=f"file://{source}",
            storage=f"file://{storage}",
            output=f"file://{tmp_path}/out.jsonl",
            extra=repr(extra),
        )
    )
    return dag_file, storage


def states_of(dag_run: Any) -> dict[str, str]:
    states: dict[str, set[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id.removeprefix("claude_batch."), set()).add(str(ti.state))
    return {task_id: "/".join(sorted(values)) for task_id, values in states.items()}


def manifest_of(storage: Path, dag_id: str, dag_run: Any) -> dict[str, Any]:
    return json.loads((storage / dag_id / dag_run.run_id / "claude_batch" / "manifest.json").read_text())


@pytest.mark.airflow
def test_when_nothing_is_left_to_requeue_later_rounds_skip_and_the_report_runs(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    dag_file, storage = write_run_dag(tmp_path, "pipeline_all_done", 30)

    dag_run = run_dag(dag_file, "pipeline_all_done")

    assert dag_run.state == "success"
    states = states_of(dag_run)
    assert states["round_0.fanout"] == "success"
    assert states["round_0.requeue"] == "success"
    assert states["round_1.submit"] == states["round_1.fanout"] == "skipped"
    assert states["report"] == "success"
    assert manifest_of(storage, "pipeline_all_done", dag_run)["dispositions"]["succeeded"] == 30
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 30


@pytest.mark.airflow
def test_a_dry_run_submits_nothing_and_still_reports(tmp_path: Path, run_dag: Any, emulator: Any) -> None:
    dag_file, storage = write_run_dag(tmp_path, "pipeline_dry_run", 30, dry_run=True)

    dag_run = run_dag(dag_file, "pipeline_dry_run")

    assert dag_run.state == "success"
    states = states_of(dag_run)
    assert states["build"] == "success"
    assert all(state == "skipped" for task, state in states.items() if task.startswith("round_"))
    assert states["report"] == "skipped"  # written, but no results: its outlets must not fire
    assert emulator.stats()["batches_created"] == 0
    assert manifest_of(storage, "pipeline_dry_run", dag_run)["money"]["estimated_upper_usd"] > 0


@pytest.mark.airflow
def test_a_manual_run_without_a_logical_date_fails_at_build_on_ds_and_runs_with_run_after(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    dag_file, _storage = write_run_dag(tmp_path, "pipeline_no_date", 5)
    text = dag_file.read_text()
    dag_file.write_text(
        text.replace(f"file://{tmp_path}/out.jsonl", f"file://{tmp_path}/out-{{{{ ds }}}}.jsonl")
    )

    failed = run_dag(dag_file, "pipeline_no_date", logical_date=None)

    assert states_of(failed)["build"] == "failed"
    assert emulator.stats()["batches_created"] == 0, "the template failed before anything was spent"

    # The README's form works with and without a logical date.
    dag_file.write_text(
        text.replace(
            f"file://{tmp_path}/out.jsonl", f"file://{tmp_path}/out-{{{{ dag_run.run_after | ds }}}}.jsonl"
        )
    )
    done = run_dag(dag_file, "pipeline_no_date", logical_date=None)

    assert done.state == "success"
    written = list(tmp_path.glob("out-*.jsonl"))
    assert [path.name for path in written] == [f"out-{done.run_after.date().isoformat()}.jsonl"]
    assert len(written[0].read_text().splitlines()) == 5


@pytest.mark.airflow
def test_a_requeue_limit_of_zero_skips_the_requeue_and_reports_pending(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    dag_file, storage = write_run_dag(tmp_path, "pipeline_no_requeue", 40, requeue_rounds=0)
    emulator.faults({"expire_next": {"fraction": 0.25, "batches": 1}})

    dag_run = run_dag(dag_file, "pipeline_no_requeue")

    assert dag_run.state == "success"
    states = states_of(dag_run)
    assert states["round_0.may_requeue"] == "success"
    assert states["round_0.requeue"] == states["round_1.submit"] == "skipped"
    assert states["report"] == "success"
    manifest = manifest_of(storage, "pipeline_no_requeue", dag_run)
    expired = manifest["rounds"][0]["outcomes"]["expired"]
    assert expired > 0
    assert manifest["dispositions"]["pending"] == expired
    assert manifest["dispositions"]["succeeded"] == 40 - expired
    assert emulator.stats()["batches_created"] == 1


@pytest.mark.airflow
def test_pending_records_over_their_bound_fail_the_run(tmp_path: Path, run_dag: Any, emulator: Any) -> None:
    dag_file, storage = write_run_dag(
        tmp_path, "pipeline_pending_bound", 40, requeue_rounds=0, max_pending_fraction=0.05
    )
    emulator.faults({"expire_next": {"fraction": 0.25, "batches": 1}})

    dag_run = run_dag(dag_file, "pipeline_pending_bound")

    assert dag_run.state == "failed"
    assert states_of(dag_run)["report"] == "failed"
    manifest = manifest_of(storage, "pipeline_pending_bound", dag_run)
    assert manifest["dispositions"]["pending"] > 2
    assert manifest["failure"]["bound"] == "max_pending_fraction"
    assert "pending.jsonl" in manifest["failure"]["reason"]


@pytest.mark.airflow
def test_a_failed_fanout_stops_the_report_and_fails_the_run(
    tmp_path: Path, run_dag: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = {"conn_type": "claude-batch", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", json.dumps({**connection, "extra": {"max_retries": 0}})
    )
    dag_file, storage = write_run_dag(tmp_path, "pipeline_fanout_fails", 20)
    emulator.faults({"fail_next": {"endpoint": "results", "status": 500, "count": 100}})

    dag_run = run_dag(dag_file, "pipeline_fanout_fails")

    assert dag_run.state == "failed"
    states = states_of(dag_run)
    assert states["round_0.fanout"] == "failed"
    assert states["report"] == "upstream_failed"
    run_folder = storage / "pipeline_fanout_fails" / dag_run.run_id / "claude_batch"
    assert (run_folder / "round-0").is_dir()  # the run ran in this folder ...
    assert not (run_folder / "manifest.json").exists()  # ... and wrote no manifest
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.airflow
def test_ten_shards_past_the_queue_limit_pace_themselves_into_ten_batches(
    tmp_path: Path,
    run_dag: Any,
    make_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10 shards of 1,000 requests against a 3,000-request queue: at most two batches fit at once (each
    holds its marker too); the others are refused with 429, wait deferred and are sent again as batches
    end (``dag.test`` runs one task at a time, so the order among shards is shown by the operator
    tests). No task fails, no batch is made twice, and each batch holds its shard's marker.
    """
    # 10 s a batch: the third create comes while the first two are still in progress, even on a busy machine
    full = make_emulator(queue_limit=3_000, queue_retry_after=1, speed=100.0)
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", full.connection_json)
    dag_file, storage = write_run_dag(
        tmp_path, "pipeline_paced", 10_000, max_requests_per_shard=1_000, deferrable=True, pacing_timeout=600
    )

    caplog.set_level("INFO")
    dag_run = run_dag(dag_file, "pipeline_paced")

    assert dag_run.state == "success"
    states = states_of(dag_run)
    assert states["round_0.submit"] == states["round_0.wait"] == states["round_0.fanout"] == "success"
    assert states["report"] == "success"
    assert all(ti.try_number <= 1 for ti in dag_run.get_task_instances()), "no task failed and retried"
    stats = full.stats()
    assert stats["batches_created"] == 10
    assert stats["creates_received"] > 10, "the queue limit was reached: some creates were refused"
    folder = storage / "pipeline_paced" / dag_run.run_id / "claude_batch" / "round-0"
    shard_states = [
        read_state(ObjectStoragePath(f"file://{folder}/shard-{i:05d}.state.json")) for i in range(10)
    ]
    assert all(state is not None and state.status == "submitted" for state in shard_states)
    batch_ids = [state.batch_id for state in shard_states if state is not None]
    assert len(set(batch_ids)) == 10
    assert (
        sum(state.refusals for state in shard_states if state is not None) == stats["creates_received"] - 10
    )
    hook = ClaudeBatchHook()
    listed = list(hook.iter_batches())
    assert sorted(batch["id"] for batch in listed) == sorted(batch_ids), "no batch beyond the shards' own"
    for state in shard_states:
        assert state is not None
        markers = [
            line["custom_id"]
            for line in hook.iter_results(str(state.batch_id))
            if is_marker(line["custom_id"])
        ]
        assert markers == [state.marker_id]
    assert "waits for capacity: the API has no capacity for it now (HTTP 429 rate_limit_error" in caplog.text
    assert manifest_of(storage, "pipeline_paced", dag_run)["dispositions"]["succeeded"] == 10_000


# --- cost truth ------------------------------------------------------------------------------------------

COST_DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG
from airflow_claude_batch.pipeline import claude_batch_pipeline

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={{"retries": 0}}) as dag:
    claude_batch_pipeline(
        "classify",
        source={source!r},
        storage={storage!r},
        model="claude-sonnet-4-6",
        max_tokens=64,
        system={system!r},
        cache_system="1h",
        max_rounds=1,
        poll_interval=0.5,
    )
"""


def estimate_and_manifest(storage: Path, dag_id: str, dag_run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = storage / dag_id / dag_run.run_id / "classify"
    return json.loads((folder / "estimate.json").read_text()), json.loads(
        (folder / "manifest.json").read_text()
    )


def write_cost_dag(tmp_path: Path, dag_id: str) -> tuple[Path, Path]:
    source = tmp_path / "tickets.jsonl"
    source.write_bytes(
        b"".join(
            orjson.dumps({"id": f"t-{i:04d}", "text": f"My invoice {i} was charged twice, please refund"})
            + b"\n"
            for i in range(200)
        )
    )
    storage = tmp_path / "runs"
    # About 1,500 tokens of system prompt: over Sonnet 4.6's minimum cacheable length of 1,024.
    system = "Label the ticket as billing, bug or other. " + "Examples of billing tickets follow. " * 160
    dag_file = tmp_path / f"{dag_id}.py"
    dag_file.write_text(
        COST_DAG_SOURCE.format(
            dag_id=dag_id, source=f"file://{source}", storage=f"file://{storage}", system=system
        )
    )
    return dag_file, storage


@pytest.mark.airflow
def test_the_upper_bound_holds_when_the_cache_never_hits(
    tmp_path: Path, run_dag: Any, make_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    never = make_emulator(cache_hit_rate=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_BATCH_DEFAULT", never.connection_json)
    dag_file, storage = write_cost_dag(tmp_path, "cost_no_hits")

    dag_run = run_dag(dag_file, "cost_no_hits")

    assert dag_run.state == "success"
    estimate, manifest = estimate_and_manifest(storage, "cost_no_hits", dag_run)
    assert manifest["tokens"]["cache_read"] == 0
    assert manifest["tokens"]["cache_write_1h"] > 0
    assert manifest["money"]["actual_usd"] <= estimate["estimated_cost_usd_upper"]


@pytest.mark.airflow
def test_a_repeated_workload_is_estimated_within_ten_percent(
    tmp_path: Path, run_dag: Any, emulator: Any
) -> None:
    dag_file, storage = write_cost_dag(tmp_path, "cost_repeat")

    first = run_dag(dag_file, "cost_repeat")
    second = run_dag(dag_file, "cost_repeat")

    assert (first.state, second.state) == ("success", "success")
    first_estimate, first_manifest = estimate_and_manifest(storage, "cost_repeat", first)
    estimate, manifest = estimate_and_manifest(storage, "cost_repeat", second)
    assert first_estimate["basis"]["kind"] == "default"
    assert estimate["basis"]["kind"] == "history"
    assert estimate["basis"]["learned"]["runs"] == [first.run_id]
    actual = manifest["money"]["actual_usd"]
    expected = estimate["estimated_cost_usd_expected"]
    assert abs(expected - actual) <= 0.10 * actual, (expected, actual)
    assert estimate["estimated_cost_usd_upper"] >= actual
    assert manifest["estimate"]["estimated_cost_usd_expected"] == expected
    assert manifest["cache_hit_rate"] is not None
    assert manifest["pipeline"] == {"dag_id": "cost_repeat", "group_id": "classify"}
    assert first_manifest["prices"]["as_of"] == estimate["prices"]["as_of"]
    report = (storage / "cost_repeat" / second.run_id / "classify" / "report.html").read_text()
    assert "Cost per run of this pipeline" in report
    assert first.run_id in report
