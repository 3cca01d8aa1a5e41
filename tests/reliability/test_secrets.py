"""Invariant 6 and the security rules around it.

- The API key never leaves the connection: a whole DAG (the pipeline factory, deferred waits, a
  requeue round) runs with a recognisable fake key, logging at DEBUG, and every byte written is
  scanned for it: the Airflow home (metadata database, task logs, configuration), the run folder,
  the flat output, the captured stdout, stderr and log records. Errors about a rejected key are
  scanned too.
- Prompts and outputs are never logged: the same run and scan, for a recognisable sentence in every
  prompt and the recognisable answers the emulator gives to it. They may only be in the data files
  (the shards' requests, the outcome files and the flat output).
- Run-folder paths are built from validated segments only.
- The emulator binds loopback by default and refuses every endpoint without the key.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION
from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.emulator import EmulatorServer
from airflow_claude_batch.emulator.answers.deterministic import summarise
from airflow_claude_batch.emulator.cli import build_parser
from airflow_claude_batch.emulator.config import EmulatorConfig
from airflow_claude_batch.exceptions import ClaudeBatchError, InputError
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.triggers.batch import ClaudeBatchTrigger
from tests.fixtures.emulator import DEFAULT_CONN_ENV, FAST_CONFIG, EmulatorHandle
from tests.reliability.harness import RunHarness, first_event, records, write_jsonl

AIRFLOW_HOME = Path(os.environ["AIRFLOW_HOME"])
DAG_ID = "reliability_secrets"
PIPELINE_ID = "claude_batch"  # the pipeline's default group id
RECORDS = 6

DAG_SOURCE = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_claude_batch.pipeline import claude_batch_pipeline

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    default_args={{"retries": 2, "retry_delay": timedelta(seconds=0)}},
) as dag:
    claude_batch_pipeline(
        source={source!r},
        storage={storage!r},
        model="claude-haiku-4-5",
        max_tokens=64,
        max_requests_per_shard=3,
        max_cost_usd=5,
        max_rounds=2,
        poll_interval=0.2,
        deferrable=True,
        output_uri={output!r},
    )
"""


class Canaries:
    """Recognisable strings and where they were found.

    :param names: canary name -> the exact text to look for.
    """

    def __init__(self, names: dict[str, str]) -> None:
        self.needles = {name: text.encode() for name, text in names.items()}
        self.scanned_files = 0
        self.scanned_bytes = 0

    def found_in(self, data: bytes) -> set[str]:
        return {name for name, needle in self.needles.items() if needle in data}

    def scan_files(self, paths: Iterable[Path]) -> dict[str, list[str]]:
        """Return ``{canary: [files holding it]}`` over ``paths``."""
        hits: dict[str, list[str]] = {}
        for path in paths:
            data = path.read_bytes()
            self.scanned_files += 1
            self.scanned_bytes += len(data)
            for name in self.found_in(data):
                hits.setdefault(name, []).append(str(path))
        return hits


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def is_data_file(path: Path) -> bool:
    """Files that hold requests or answers by design: shards, outcome rows, the flat output."""
    return path.name.endswith(".requests.jsonl") or bool(
        re.search(r"/(shard-\d{5}|out)/[^/]+\.jsonl$", str(path))
    )


@pytest.fixture
def fake_key() -> str:
    return f"sk-ant-api03-reliability-{secrets.token_hex(20)}"


@pytest.fixture
def keyed_emulator(
    make_emulator: Callable[..., EmulatorHandle], fake_key: str, monkeypatch: pytest.MonkeyPatch
) -> EmulatorHandle:
    """An emulator that accepts only the fake key, set as the default connection (key in the password)."""
    emulator = make_emulator(api_key=fake_key)
    monkeypatch.setenv(DEFAULT_CONN_ENV, emulator.connection_json)
    return emulator


@pytest.mark.airflow
def test_a_whole_dag_run_writes_the_key_nowhere_and_logs_no_prompt_or_output(
    run_dag: Callable[..., Any],
    keyed_emulator: EmulatorHandle,
    fake_key: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    figures: Any,
) -> None:
    prompt_token = f"PROMPT-CANARY-{secrets.token_hex(6)}"
    # More than twelve words before the token: the emulator's answer quotes the first twelve only.
    texts = [
        f"Please summarise the note about heron colony number {n} near the old mill for the {prompt_token}"
        for n in range(RECORDS)
    ]
    answers = [summarise(text, load_models().get("claude-haiku-4-5").id) for text in texts]
    source = write_jsonl(
        tmp_path / "in" / "notes.jsonl", [{"id": f"n-{n}", "text": t} for n, t in enumerate(texts)]
    )
    storage = tmp_path / "storage"
    output = storage / "out" / "answers.jsonl"
    dag_file = tmp_path / f"{DAG_ID}.py"
    dag_file.write_text(
        DAG_SOURCE.format(
            dag_id=DAG_ID, source=f"file://{source}", storage=f"file://{storage}", output=f"file://{output}"
        )
    )
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    keyed_emulator.faults({"expire_next": {"fraction": 0.34, "batches": 1}})  # so that a requeue round runs

    dag_run = run_dag(dag_file, DAG_ID)

    assert dag_run.state == "success"
    run_dir = storage / DAG_ID / dag_run.run_id / PIPELINE_ID
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["dispositions"]["succeeded"] == RECORDS
    assert len(manifest["rounds"]) == 2
    canaries = Canaries(
        {
            "key": fake_key,
            "key_tail": fake_key[-24:],
            "prompt": prompt_token,
            **{f"output_{n}": answer for n, answer in enumerate(answers)},
            "output_ref": answers[0][answers[0].index("[ref ") :],
        }
    )
    # The scanner finds what is there: the prompts in the shards, the answers in the outcome rows.
    data_hits = canaries.found_in(
        b"".join(path.read_bytes() for path in files_under(run_dir) if is_data_file(path))
    )
    assert {"prompt", "output_0", "output_ref"} <= data_hits
    assert canaries.found_in(output.read_bytes()) >= {f"output_{n}" for n in range(RECORDS)}

    home_hits = canaries.scan_files(files_under(AIRFLOW_HOME))
    run_hits = canaries.scan_files(files_under(storage))
    captured = capfd.readouterr()
    log_text = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    stream_hits = canaries.found_in((captured.out + captured.err + log_text).encode())

    figures.add("secret_scan_files", canaries.scanned_files)
    figures.add("secret_scan_bytes", canaries.scanned_bytes)
    assert any(path.suffix == ".db" for path in files_under(AIRFLOW_HOME))  # the metadata database was read
    assert home_hits == {}, f"found in the Airflow home (database, logs): {home_hits}"
    assert stream_hits == set(), f"found in stdout, stderr or log records: {stream_hits}"
    assert "key" not in run_hits
    assert "key_tail" not in run_hits
    leaked = {name: [p for p in paths if not is_data_file(Path(p))] for name, paths in run_hits.items()}
    assert {name: paths for name, paths in leaked.items() if paths} == {}, (
        "prompts or answers outside the data"
    )
    assert len(caplog.records) > 100  # DEBUG was really on


def test_errors_about_a_rejected_key_do_not_contain_it(
    make_emulator: Callable[..., EmulatorHandle],
    fake_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = make_emulator(api_key="the-only-key-this-emulator-takes")
    monkeypatch.setenv(
        DEFAULT_CONN_ENV,
        orjson.dumps({"conn_type": "claude-batch", "host": other.base_url, "password": fake_key}).decode(),
    )
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    hook = ClaudeBatchHook()
    for call in (
        lambda: hook.get_batch("msgbatch_x"),
        lambda: list(hook.iter_batches()),
        hook.test_connection,
    ):
        try:
            messages.append(repr(call()))
        except ClaudeBatchError as error:
            messages.append(f"{error!r} {error}")
    messages.append(repr(hook.settings))
    shard = _one_shard(tmp_path)
    with pytest.raises(AirflowFailException) as refused:
        ClaudeBatchSubmitOperator(task_id="submit", shard=shard).execute({})
    messages.append(str(refused.value))
    trigger = ClaudeBatchTrigger(batch_id="msgbatch_x", poll_interval=0.05, end_time=time.time() + 30)
    messages.append(repr(asyncio.run(first_event(trigger))))
    states = [path.read_text() for path in (tmp_path / "runs").rglob("*.state.json")]

    assert other.stats()["auth_failures"] >= 4
    assert any("rejected" in message for message in messages)
    everything = "\n".join([*messages, *states, caplog.text])
    assert fake_key not in everything
    assert fake_key[-24:] not in everything


def _one_shard(tmp_path: Path) -> dict[str, Any]:
    from airflow_claude_batch.core.api.limits import batch_body_size
    from airflow_claude_batch.core.run.shards import ShardDescriptor

    folder = RunFolder.for_run(ObjectStoragePath(f"file://{tmp_path}/runs"), "dag", "run", "claude_batch")
    line = orjson.dumps(
        {
            "custom_id": "a",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "x"}],
            },
        }
    )
    path = folder.shard_requests(0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(line + b"\n")
    return ShardDescriptor(str(folder.root), 0, 0, str(path), 1, batch_body_size(len(line), 1)).to_dict()


# --- run-folder paths ----------------------------------------------------------------------------------

CLIMBING = [
    "..",
    "../etc",
    "a/../../b",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "",
    ".",
    "run id",
    "x\x00y",
    "%2e%2e",
    "é",
]
AIRFLOW_RUN_IDS = [
    "manual__2026-11-02T18:00:00+00:00",
    "scheduled__2026-11-02T18:00:00+00:00",
    "backfill__2026-09-01T00:00:00+00:00",
    "asset_triggered__2026-11-02T18:00:00.123456+00:00",
    "manual__2026-11-02T18:00:00.123456+00:00",
]


@pytest.mark.parametrize("value", CLIMBING)
def test_a_dag_id_or_run_id_that_is_not_one_path_segment_is_refused(value: str, tmp_path: Path) -> None:
    storage = ObjectStoragePath(f"file://{tmp_path}/runs")
    with pytest.raises(InputError, match="cannot be used in a storage path"):
        RunFolder.for_run(storage, value, "manual__2026-11-02T18:00:00+00:00", "claude_batch")
    with pytest.raises(InputError, match="cannot be used in a storage path"):
        RunFolder.for_run(storage, "dag", value, "claude_batch")


@pytest.mark.parametrize("run_id", AIRFLOW_RUN_IDS)
def test_the_run_ids_airflow_makes_are_accepted_as_one_segment(run_id: str, tmp_path: Path) -> None:
    folder = RunFolder.for_run(ObjectStoragePath(f"file://{tmp_path}/runs"), "dag", run_id, "claude_batch")
    assert (
        str(folder.shard_requests(0, 0))
        == f"file://{tmp_path}/runs/dag/{run_id}/claude_batch/round-0/shard-00000.requests.jsonl"
    )


@pytest.mark.parametrize(
    ("round_index", "shard_index"),
    [
        ("../../../../escape", 0),
        (0, "../../escape"),
        ("1/../../../escape", 0),
        (-1, 0),
        (0, -3),
        (True, 0),
        (1.0, 0),
    ],
)
def test_round_and_shard_numbers_from_a_descriptor_cannot_climb_out_of_the_run_folder(
    round_index: Any, shard_index: Any, tmp_path: Path
) -> None:
    folder = RunFolder.for_run(ObjectStoragePath(f"file://{tmp_path}/runs"), "dag", "run", "claude_batch")
    for build in (folder.shard_requests, folder.shard_state):
        with pytest.raises(InputError, match="whole number >= 0"):
            build(round_index, shard_index)
    with pytest.raises(InputError, match="whole number >= 0"):
        folder.shard_outcome(round_index, shard_index, "succeeded")


def test_a_run_whose_run_id_climbs_is_refused_before_anything_is_written(
    tmp_path: Path, emulator: Any
) -> None:
    source = write_jsonl(tmp_path / "in" / "tickets.jsonl", records(3))
    run = RunHarness(
        storage=tmp_path / "deep" / "storage", source=f"file://{source}", run_id="../../../escaped"
    )

    with pytest.raises(
        AirflowFailException, match=re.escape("run_id '../../../escaped' cannot be used in a storage path")
    ):
        run.build()

    assert not (tmp_path / "escaped").exists()
    assert not list(tmp_path.rglob("*.requests.jsonl"))
    assert emulator.stats()["count_tokens"] == 0


# --- the emulator's own exposure -------------------------------------------------------------------------


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_emulator_binds_loopback_by_default() -> None:
    assert EmulatorConfig().host == "127.0.0.1"
    assert build_parser().parse_args([]).host == "127.0.0.1"
    with EmulatorServer(EmulatorConfig()) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        assert server.base_url == f"http://127.0.0.1:{port}"
        address = _non_loopback_address()
        if address is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{address}:{port}/v1/messages/batches", timeout=2.0)


ENDPOINT_CALLS = [
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches"),
    ("GET", "/v1/messages/batches/{id}"),
    ("GET", "/v1/messages/batches/{id}/results"),
    ("POST", "/v1/messages/batches/{id}/cancel"),
    ("DELETE", "/v1/messages/batches/{id}"),
    ("POST", "/v1/messages/count_tokens"),
]


@pytest.mark.parametrize("accepted_key", ["the-configured-key", None], ids=["one-key", "any-key"])
def test_the_emulator_refuses_every_endpoint_without_the_key(
    make_emulator: Callable[..., EmulatorHandle], accepted_key: str | None, figures: Any
) -> None:
    emulator = make_emulator(api_key=accepted_key)
    good = {"x-api-key": accepted_key or "any-key", "anthropic-version": ANTHROPIC_VERSION}
    body = {
        "requests": [
            {
                "custom_id": "a",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": "x"}],
                },
            }
        ]
    }
    batch_id = httpx.post(f"{emulator.base_url}/v1/messages/batches", json=body, headers=good).json()["id"]
    before = emulator.stats()
    refused_with = [{"anthropic-version": ANTHROPIC_VERSION}]  # no key at all
    if accepted_key is not None:
        refused_with += [
            {"x-api-key": "wrong-key", "anthropic-version": ANTHROPIC_VERSION},
            {"authorization": "Bearer wrong-key", "anthropic-version": ANTHROPIC_VERSION},
        ]

    for method, path in ENDPOINT_CALLS:
        for headers in refused_with:
            response = httpx.request(
                method, emulator.base_url + path.format(id=batch_id), headers=headers, json=body, timeout=10.0
            )
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["type"] == "authentication_error"
            figures.add("unauthenticated_calls_refused")

    after = emulator.stats()
    assert after["auth_failures"] - before["auth_failures"] == len(ENDPOINT_CALLS) * len(refused_with)
    for counter in ("creates_received", "batches_created", "retrieves", "lists", "cancels", "deletes"):
        assert after[counter] == before[counter], counter


# --- credentials in a gateway's URL ----------------------------------------------------------------


class _RecordingTaskInstance:
    """Stands in for the task instance of a context: records what the task pushes to XCom."""

    def __init__(self) -> None:
        self.pushed: list[Any] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))


class _BasicAuthGateway:
    """A gateway in front of the emulator: takes HTTP Basic credentials, calls the API with its own key.

    A call to the API without the gateway's credentials is refused with 401, as a gateway would.
    """

    def __init__(self, app: Any, user: str, password: str, api_key: str) -> None:
        self.app = app
        self.expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
        self.api_key = api_key
        self.authorized = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != self.expected:
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"gateway: unauthorized"})
                return
            self.authorized += 1
            kept = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"x-api-key")]
            scope = {**scope, "headers": [*kept, (b"x-api-key", self.api_key.encode())]}
        await self.app(scope, receive, send)


@pytest.fixture
def gateway_with_credentials(fake_key: str) -> Iterator[tuple[str, str, EmulatorHandle, _BasicAuthGateway]]:
    """An emulator behind a Basic-auth gateway; yields the gateway URL with credentials, the secret,
    the emulator's handle and the gateway."""
    url_secret = f"gw-secret-{secrets.token_hex(8)}"
    server = EmulatorServer(dataclasses.replace(FAST_CONFIG, api_key=fake_key))
    gateway = _BasicAuthGateway(server.app, "gwuser", url_secret, fake_key)
    server.app = gateway
    with server:
        scheme, rest = server.base_url.split("://", 1)
        yield f"{scheme}://gwuser:{url_secret}@{rest}", url_secret, EmulatorHandle(server.base_url), gateway


def test_credentials_in_the_base_url_are_written_nowhere_when_a_create_is_refused(
    gateway_with_credentials: tuple[str, str, EmulatorHandle, _BasicAuthGateway],
    fake_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    gateway, url_secret, emulator, proxy = gateway_with_credentials
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    monkeypatch.setenv(
        DEFAULT_CONN_ENV,
        orjson.dumps({"conn_type": "claude_batch", "host": gateway, "password": fake_key}).decode(),
    )
    # A create refused (the gateway forbids it) through a Base URL that carries credentials.
    emulator.faults({"fail_next": {"endpoint": "create", "status": 403}})
    refused_shard = _one_shard(tmp_path / "refused")
    with pytest.raises(AirflowFailException) as refused:
        ClaudeBatchSubmitOperator(task_id="submit", shard=refused_shard).execute({})
    texts += [str(refused.value), repr(refused.value), str(refused.value.__cause__)]
    states = [path.read_text() for path in (tmp_path / "refused").rglob("*.state.json")]
    assert states
    assert all('"failed"' in state and "***@" in state for state in states)
    hook = ClaudeBatchHook()
    texts += [repr(hook.settings), hook.test_connection()[1]]

    # The same gateway again: the batch is made, its link and descriptor go to XCom.
    monkeypatch.setenv("CLAUDE_BATCH_BATCH_LINK", "{base_url}/ui/batches/{batch_id}")
    ti = _RecordingTaskInstance()
    returned = ClaudeBatchSubmitOperator(task_id="submit", shard=_one_shard(tmp_path / "made")).execute(
        {"ti": ti}
    )
    assert returned["batch_id"]
    assert ti.pushed
    texts += [orjson.dumps(returned).decode(), orjson.dumps(ti.pushed).decode()]
    written = [path.read_text() for path in tmp_path.rglob("*.json")]

    captured = capfd.readouterr()
    everything = "\n".join(
        [*texts, *states, *written, caplog.text, captured.out, captured.err]
        + [str(record.__dict__) for record in caplog.records]
    )
    assert "refused to create a batch" in everything  # the refusal is reported, its URL masked
    assert "***@" in everything
    assert proxy.authorized >= 3  # the credentials reached the gateway, as a header
    assert url_secret not in everything


@pytest.mark.airflow
def test_a_whole_dag_run_through_a_gateway_url_with_credentials_writes_them_nowhere(
    run_dag: Callable[..., Any],
    gateway_with_credentials: tuple[str, str, EmulatorHandle, _BasicAuthGateway],
    fake_key: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway, url_secret, _, proxy = gateway_with_credentials
    monkeypatch.setenv(
        DEFAULT_CONN_ENV,
        orjson.dumps({"conn_type": "claude_batch", "host": gateway, "password": fake_key}).decode(),
    )
    monkeypatch.setenv("CLAUDE_BATCH_BATCH_LINK", "{base_url}/ui/batches/{batch_id}")
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    source = write_jsonl(
        tmp_path / "in" / "notes.jsonl", [{"id": f"g-{n}", "text": f"note {n}"} for n in range(RECORDS)]
    )
    storage = tmp_path / "storage"
    dag_id = f"{DAG_ID}_gateway"
    dag_file = tmp_path / f"{dag_id}.py"
    dag_file.write_text(
        DAG_SOURCE.format(
            dag_id=dag_id,
            source=f"file://{source}",
            storage=f"file://{storage}",
            output=f"file://{storage / 'out' / 'answers.jsonl'}",
        )
    )

    dag_run = run_dag(dag_file, dag_id)

    assert dag_run.state == "success"
    assert proxy.authorized > RECORDS // 3  # every call went through the gateway with its credentials
    canaries = Canaries({"url_secret": url_secret})
    home_hits = canaries.scan_files(files_under(AIRFLOW_HOME))
    run_hits = canaries.scan_files(files_under(storage))
    captured = capfd.readouterr()
    log_text = caplog.text + "\n".join(str(record.__dict__) for record in caplog.records)
    assert home_hits == {}, f"found in the Airflow home (database with XCom, task logs): {home_hits}"
    assert run_hits == {}, f"found in the run folder: {run_hits}"
    assert canaries.found_in((captured.out + captured.err + log_text).encode()) == set()
