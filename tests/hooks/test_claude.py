"""The hook against the running emulator, through the real SDK (sync and async) and the stream client."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from airflow_claude_batch import CONNECTION_TYPE, get_provider_info
from airflow_claude_batch.core.api.limits import ANTHROPIC_VERSION, batch_body_size
from airflow_claude_batch.exceptions import (
    BatchNotFoundError,
    ConnectionConfigError,
    InputError,
    ResultsStreamInterrupted,
    ResultsUnavailableError,
)
from airflow_claude_batch.hooks.api_errors import NOT_FOUND_DELAYS
from airflow_claude_batch.hooks.claude import ClaudeBatchHook, normalize_base_url, settings_from_connection
from airflow_claude_batch.hooks.results_stream import results_path

BAD_KEY = "sk-ant-fake-do-not-leak-7f3a9c"


CONN_FIELDS = {"anthropic_version", "anthropic_beta", "workspace_id", "timeout", "max_retries"}


def request(index: int, text: str = "classify this ticket") -> dict[str, Any]:
    return {
        "custom_id": f"req-{index}",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": f"{text} {index}"}],
        },
    }


def write_shard(path: Path, count: int) -> tuple[int, int]:
    lines = [orjson.dumps(request(i)) for i in range(count)]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return count, batch_body_size(sum(map(len, lines)), count)


def wait_until_ended(hook: ClaudeBatchHook, batch_id: str) -> dict[str, Any]:
    for _ in range(200):
        batch = hook.get_batch(batch_id)
        if batch["processing_status"] == "ended":
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not end")


@pytest.fixture
def hook(emulator: Any) -> Iterator[ClaudeBatchHook]:
    hook = ClaudeBatchHook()
    yield hook
    hook.close()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "claude-batch", **fields}))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the connection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://api.anthropic.com"),
        ("", None, "https://api.anthropic.com"),
        ("https://api.anthropic.com/v1/", None, "https://api.anthropic.com"),
        ("api.anthropic.com", None, "https://api.anthropic.com"),
        ("gw.example.com/anthropic/v1", None, "https://gw.example.com/anthropic"),
        ("http://127.0.0.1:8765/", None, "http://127.0.0.1:8765"),
        ("localhost:8765/v1", None, "http://localhost:8765"),
        ("127.0.0.1", 8765, "http://127.0.0.1:8765"),
        ("  https://gw.example.com:8443  ", 9999, "https://gw.example.com:8443"),
    ],
)
def test_base_url_is_normalised_as_users_paste_it(host: str | None, port: int | None, expected: str) -> None:
    assert normalize_base_url(host, port) == expected


def test_settings_read_extras_and_hide_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(
        monkeypatch,
        "claude_extras",
        host="gw.example.com/v1",
        password=BAD_KEY,
        extra={"anthropic_beta": "flag-a, flag-b", "timeout": "30", "max_retries": 2},
    )
    settings = ClaudeBatchHook("claude_extras").settings
    assert settings.base_url == "https://gw.example.com"
    assert settings.betas == ("flag-a", "flag-b")
    assert settings.timeout == 30.0
    assert settings.max_retries == 2
    assert settings.anthropic_version == ANTHROPIC_VERSION
    assert BAD_KEY not in repr(settings)


@pytest.mark.parametrize(("conn_type", "warned"), [(CONNECTION_TYPE, False), ("claude_batch", True)])
def test_airflow_reads_the_connection_without_a_scheme_warning(
    conn_type: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.models.connection import Connection

    connection = Connection(conn_id="claude_quiet", conn_type=conn_type, host="gw.example.com")
    with capture_logs() as logs, caplog.at_level(logging.WARNING):
        uri = connection.get_uri()  # what Airflow does on every read of a connection
    assert uri.startswith("claude-batch://")
    seen = [str(entry["event"]) for entry in logs] + [record.getMessage() for record in caplog.records]
    assert any("shall not contain" in line for line in seen) is warned


def test_a_missing_connection_is_named_with_the_ways_to_add_it() -> None:
    with pytest.raises(ConnectionConfigError) as raised:
        ClaudeBatchHook("claude_never_added").settings  # noqa: B018
    message = str(raised.value)
    assert "connection 'claude_never_added' is not defined" in message
    assert "airflow connections add claude_never_added --conn-type claude-batch" in message
    assert "AIRFLOW_CONN_CLAUDE_NEVER_ADDED" in message


def test_a_connection_of_the_earlier_type_name_keeps_working(monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = {"conn_type": "claude_batch", "host": "gw.example.com", "password": BAD_KEY}
    legacy["extra"] = {"extra__claude_batch__timeout": "45"}
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_LEGACY", json.dumps(legacy))
    settings = ClaudeBatchHook("claude_legacy").settings
    assert settings.base_url == "https://gw.example.com"
    assert settings.timeout == 45.0


def test_every_client_carries_the_same_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(
        monkeypatch,
        "claude_beta",
        host="gw.example.com",
        password=BAD_KEY,
        extra={"anthropic_beta": "b1,b2", "workspace_id": " wrkspc_01abc "},
    )
    hook = ClaudeBatchHook("claude_beta")
    sdk_headers = hook.get_conn().default_headers
    async_headers = hook.get_async_conn().default_headers
    stream_headers = hook._stream_client.headers
    for headers in (sdk_headers, async_headers, stream_headers):
        assert headers["anthropic-beta"] == "b1,b2"
        assert headers["anthropic-version"] == ANTHROPIC_VERSION
        assert headers["anthropic-workspace-id"] == "wrkspc_01abc"
    assert hook.get_conn().max_retries == 5
    assert hook.get_async_conn(max_retries=0).max_retries == 0
    for name, value in hook.get_conn().auth_headers.items():
        assert stream_headers[name] == value
    hook.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "example.com"}, "has no API key"),
        ({"password": "k", "host": "ftp://example.com"}, "invalid Base URL"),
        ({"password": "k", "extra": {"max_retries": -1}}, "'max_retries' must be a number >= 0"),
        ({"password": "k", "extra": {"timeout": "soon"}}, "'timeout' must be a number"),
        ({"password": "k", "extra": {"workspace_id": "wrkspc 1"}}, "'workspace_id' must be a workspace id"),
    ],
)
def test_a_misconfigured_connection_says_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], message: str
) -> None:
    set_connection(monkeypatch, "claude_bad", **fields)
    with pytest.raises(ConnectionConfigError, match=message) as raised:
        settings_from_connection(ClaudeBatchHook.get_connection("claude_bad"))
    assert "claude_bad" in str(raised.value)


def test_ui_fields_match_the_provider_info() -> None:
    types = get_provider_info()["connection-types"]
    declared = next(entry for entry in types if entry["connection-type"] == "claude-batch")
    behaviour = ClaudeBatchHook.get_ui_field_behaviour()
    assert behaviour == {k.replace("-", "_"): v for k, v in declared["ui-field-behaviour"].items()}
    assert behaviour["hidden_fields"] == ["schema", "port", "login"]
    assert declared["hook-class-name"] == f"{ClaudeBatchHook.__module__}.{ClaudeBatchHook.__name__}"
    assert ClaudeBatchHook.conn_type == declared["connection-type"]
    assert ClaudeBatchHook.hook_name == declared["hook-name"]
    assert set(declared["conn-fields"]) == CONN_FIELDS


# --- calls ---------------------------------------------------------------------------------------


def test_create_get_results_cancel_delete(hook: ClaudeBatchHook, emulator: Any) -> None:
    created = hook.create_batch([request(i) for i in range(3)])
    assert created["id"].startswith("msgbatch_")
    assert created["request_counts"]["processing"] == 3
    ended = wait_until_ended(hook, created["id"])
    results = list(hook.iter_results(created["id"]))
    assert sorted(line["custom_id"] for line in results) == ["req-0", "req-1", "req-2"]
    assert all(line["result"]["type"] == "succeeded" for line in results)
    assert ended["request_counts"]["succeeded"] == 3
    assert hook.delete_batch(created["id"]) == {"id": created["id"], "type": "message_batch_deleted"}
    with pytest.raises(BatchNotFoundError, match=created["id"]):
        hook.get_batch(created["id"])
    assert emulator.stats()["creates_received"] == 1


def test_cancel_a_running_batch(hook: ClaudeBatchHook, emulator: Any) -> None:
    emulator.faults({"processing_seconds": 60})
    created = hook.create_batch([request(0)])
    canceled = hook.cancel_batch(created["id"])
    assert canceled["processing_status"] in ("canceling", "ended")
    assert canceled["cancel_initiated_at"] is not None


def test_results_of_a_running_batch_are_not_available(hook: ClaudeBatchHook, emulator: Any) -> None:
    emulator.faults({"processing_seconds": 60})
    created = hook.create_batch([request(0)])
    with pytest.raises(ResultsUnavailableError, match="wait for it to end"):
        list(hook.iter_results(created["id"]))


def test_create_from_a_shard_file(hook: ClaudeBatchHook, emulator: Any, tmp_path: Path) -> None:
    shard = tmp_path / "shard-00000.requests.jsonl"
    count, size = write_shard(shard, 250)
    created = hook.create_batch_from_file(shard, count, size)
    assert created["request_counts"]["processing"] == 250
    assert emulator.stats()["last_create_body_bytes"] == size
    wait_until_ended(hook, created["id"])
    ids = {line["custom_id"] for line in hook.iter_results(created["id"])}
    assert ids == {f"req-{i}" for i in range(250)}


def test_a_shard_file_that_does_not_match_is_cut_short_and_creates_nothing(
    hook: ClaudeBatchHook, emulator: Any, tmp_path: Path
) -> None:
    shard = tmp_path / "shard-00000.requests.jsonl"
    count, size = write_shard(shard, 20)
    hook.test_connection()
    with pytest.raises(InputError, match="does not match its descriptor"):
        hook.create_batch_from_file(shard, count - 1, size)
    assert emulator.stats()["batches_created"] == 0


def test_iter_batches_walks_every_page_newest_first(hook: ClaudeBatchHook, emulator: Any) -> None:
    ids = [hook.create_batch([request(i)])["id"] for i in range(5)]
    before = emulator.stats()["lists"]
    listed = hook.iter_batches(limit=2)
    assert next(listed)["id"] == ids[-1]
    assert emulator.stats()["lists"] == before + 1  # lazily: one page so far
    assert [batch["id"] for batch in listed] == ids[::-1][1:]
    assert emulator.stats()["lists"] == before + 3


def test_count_tokens_ignores_fields_the_endpoint_does_not_take(hook: ClaudeBatchHook) -> None:
    params = {**request(0)["params"], "temperature": 0.2, "system": "You sort support tickets."}
    assert hook.count_tokens(params) > hook.count_tokens(request(0)["params"]) > 0


# --- errors and retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "retry_after": 0.05, "count": 2},
        {"status": 500, "retry_after": 0.05, "count": 2},
        {"status": 529, "retry_after": 0.05, "count": 2},
        {"status": 500, "count": 1},  # no retry-after: the SDK's own backoff
    ],
)
def test_transient_errors_on_reads_are_retried(
    hook: ClaudeBatchHook, emulator: Any, fault: dict[str, Any]
) -> None:
    created = hook.create_batch([request(0)])
    emulator.faults({"fail_next": {"endpoint": "retrieve", **fault}})
    assert hook.get_batch(created["id"])["id"] == created["id"]
    assert emulator.stats()["retrieves"] == fault["count"] + 1
    emulator.faults({"fail_next": {"endpoint": "list", **fault}})
    assert [batch["id"] for batch in hook.iter_batches()] == [created["id"]]


def test_transient_errors_on_the_first_call_are_retried_too(hook: ClaudeBatchHook, emulator: Any) -> None:
    emulator.faults({"fail_next": {"endpoint": "list", "status": 529, "count": 3, "retry_after": 0.05}})
    assert list(hook.iter_batches()) == []
    assert emulator.stats()["lists"] == 4


def test_reads_give_up_after_max_retries(
    hook: ClaudeBatchHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(
        monkeypatch, "claude_few", host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 1}
    )
    few = ClaudeBatchHook("claude_few")
    few.test_connection()
    emulator.faults({"fail_next": {"endpoint": "list", "status": 500, "count": 5, "retry_after": 0.05}})
    with pytest.raises(anthropic.InternalServerError):
        list(few.iter_batches())
    assert emulator.stats()["lists"] == 1 + 2


@pytest.mark.parametrize("status", [500, 529, 429])
def test_the_create_is_never_retried(hook: ClaudeBatchHook, emulator: Any, status: int) -> None:
    hook.test_connection()
    emulator.faults({"fail_next": {"endpoint": "create", "status": status, "count": 1}})
    with pytest.raises(anthropic.APIStatusError) as raised:
        hook.create_batch([request(0)])
    assert raised.value.status_code == status
    assert emulator.stats()["creates_received"] == 1


def test_the_streamed_create_is_never_retried(hook: ClaudeBatchHook, emulator: Any, tmp_path: Path) -> None:
    shard = tmp_path / "shard.jsonl"
    count, size = write_shard(shard, 10)
    emulator.faults({"fail_next": {"endpoint": "create", "status": 500, "count": 1}})
    with pytest.raises(anthropic.InternalServerError):
        hook.create_batch_from_file(shard, count, size)
    emulator.faults({"lose_next_create_response": 1, "mode": "drop"})
    with pytest.raises(anthropic.APIConnectionError):
        hook.create_batch_from_file(shard, count, size)
    stats = emulator.stats()
    assert stats["creates_received"] == 2
    assert stats["batches_created"] == 1


def test_an_invalid_create_is_an_input_error(hook: ClaudeBatchHook, emulator: Any) -> None:
    with pytest.raises(InputError, match="refused to create a batch"):
        hook.create_batch([request(0), request(0)])  # duplicate custom_id
    assert emulator.stats()["batches_created"] == 0


def test_a_rejected_key_is_one_clear_error(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    set_connection(monkeypatch, "claude_wrong_key", host=emulator.base_url, password=BAD_KEY)
    hook = ClaudeBatchHook("claude_wrong_key")
    caplog.set_level(logging.DEBUG)
    expected = r"'claude_wrong_key' was rejected .* password field"
    with pytest.raises(ConnectionConfigError, match=expected) as raised:
        hook.get_batch("msgbatch_x")
    assert emulator.stats()["auth_failures"] == 1
    ok, message = hook.test_connection()
    assert not ok
    assert "claude_wrong_key" in message
    assert "password" in message
    assert_key_absent(BAD_KEY, raised.value, message, caplog.text, capsys.readouterr())


def test_an_unreachable_base_url_fails_fast_with_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    port = closed_port()
    set_connection(monkeypatch, "claude_nowhere", host=f"127.0.0.1:{port}", password=BAD_KEY)
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # a retry would back off: there must be none
    caplog.set_level(logging.DEBUG)
    hook = ClaudeBatchHook("claude_nowhere")
    with pytest.raises(ConnectionConfigError) as raised:
        hook.get_batch("msgbatch_x")
    message = str(raised.value)
    assert f"http://127.0.0.1:{port}" in message
    assert "claude_nowhere" in message
    assert "ConnectionRefusedError" in message
    ok, tested = hook.test_connection()
    assert not ok
    assert f"127.0.0.1:{port}" in tested
    with pytest.raises(ConnectionConfigError):
        hook.iter_results("msgbatch_x").__next__()
    assert slept == []
    assert_key_absent(BAD_KEY, raised.value, tested, caplog.text, capsys.readouterr())


def test_an_unknown_host_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "claude_unknown", host="https://no-such-host.invalid", password=BAD_KEY)
    monkeypatch.setattr(time, "sleep", lambda _: pytest.fail("a failed name lookup must not be retried"))
    with pytest.raises(ConnectionConfigError, match=r"no-such-host\.invalid"):
        ClaudeBatchHook("claude_unknown").get_batch("msgbatch_x")


def test_a_wrong_base_url_path_is_a_connection_error(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = f"{emulator.base_url}/not/the/api"
    set_connection(monkeypatch, "claude_path", host=wrong, password=emulator.api_key)
    with pytest.raises(ConnectionConfigError, match="Base URL to the API root"):
        list(ClaudeBatchHook("claude_path").iter_batches())


def test_connection_test_succeeds(hook: ClaudeBatchHook, emulator: Any) -> None:
    ok, message = hook.test_connection()
    assert ok
    assert emulator.base_url in message
    assert emulator.stats()["lists"] == 1


def assert_key_absent(key: str, error: BaseException, *texts: Any) -> None:
    chain: list[str] = []
    current: BaseException | None = error
    while current is not None:
        chain += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    for text in [*chain, *map(str, texts)]:
        assert key not in text


# --- results -------------------------------------------------------------------------------------


def test_a_cut_results_stream_raises_a_retryable_error(hook: ClaudeBatchHook, emulator: Any) -> None:
    created = hook.create_batch([request(i) for i in range(50)])
    wait_until_ended(hook, created["id"])
    emulator.faults({"cut_results_after_lines": 20})
    seen: list[str] = []

    def read_all() -> None:
        seen.extend(line["custom_id"] for line in hook.iter_results(created["id"]))

    with pytest.raises(ResultsStreamInterrupted, match=created["id"]):
        read_all()
    assert len(seen) == 20
    assert len(list(hook.iter_results(created["id"]))) == 50  # downloading again works


def test_results_download_retries_transient_errors(hook: ClaudeBatchHook, emulator: Any) -> None:
    created = hook.create_batch([request(i) for i in range(5)])
    wait_until_ended(hook, created["id"])
    emulator.faults({"fail_next": {"endpoint": "results", "status": 529, "count": 2, "retry_after": 0.05}})
    assert len(list(hook.iter_results(created["id"]))) == 5
    assert emulator.stats()["results_downloads"] == 3


def test_results_that_lag_an_ended_batch_are_waited_for(
    hook: ClaudeBatchHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_BATCH_RESULTS_LAG_SECONDS", "60")
    created = hook.create_batch([request(i) for i in range(5)])
    wait_until_ended(hook, created["id"])
    before = emulator.stats()["results_downloads"]
    emulator.faults({"results_lag_seconds": 2.0})
    try:
        assert len(list(hook.iter_results(created["id"]))) == 5
    finally:
        emulator.faults({"results_lag_seconds": None})
    assert emulator.stats()["results_downloads"] - before >= 2  # a 404 first, then the results


def test_results_that_lag_past_the_bound_fail_naming_the_batch_not_the_base_url(
    hook: ClaudeBatchHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_BATCH_RESULTS_LAG_SECONDS", "1.5")
    created = hook.create_batch([request(i) for i in range(3)])
    wait_until_ended(hook, created["id"])
    emulator.faults({"results_lag_seconds": 600})
    started = time.monotonic()
    try:
        with pytest.raises(ResultsUnavailableError, match="may lag") as raised:
            list(hook.iter_results(created["id"]))
    finally:
        emulator.faults({"results_lag_seconds": None})
    assert created["id"] in str(raised.value)
    assert "Base URL" not in str(raised.value)
    assert 1.0 <= time.monotonic() - started < 60


def test_results_come_through_the_connection_base_url(hook: ClaudeBatchHook, emulator: Any) -> None:
    base_url = hook.settings.base_url
    assert results_path(base_url, f"{emulator.base_url}/v1/messages/batches/b/results") == (
        f"{emulator.base_url}/v1/messages/batches/b/results"
    )
    # A gateway passing the API's own URL through: the path is fetched from the gateway.
    assert results_path(base_url, "https://api.anthropic.com/v1/messages/batches/b/results?x=1") == (
        "v1/messages/batches/b/results?x=1"
    )


# --- async ---------------------------------------------------------------------------------------


async def test_async_get_and_cancel(emulator: Any) -> None:
    emulator.faults({"processing_seconds": 60})
    hook = ClaudeBatchHook()
    created = await hook.get_async_conn().messages.batches.create(requests=[request(0)])  # type: ignore[list-item]
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 529, "count": 1, "retry_after": 0.05}})
    batch = await hook.aget_batch(created.id)
    assert batch["id"] == created.id
    assert batch["processing_status"] == "in_progress"
    canceled = await hook.acancel_batch(created.id)
    assert canceled["cancel_initiated_at"] is not None
    with pytest.raises(BatchNotFoundError):
        await hook.aget_batch("msgbatch_does_not_exist")
    # a 404 is read again after 1, 2 and 4 s before it counts (a batch may lag its create)
    assert emulator.stats()["retrieves"] == 2 + 1 + len(NOT_FOUND_DELAYS)


async def test_async_rejected_key(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "claude_async_bad", host=emulator.base_url, password=BAD_KEY)
    with pytest.raises(ConnectionConfigError, match="claude_async_bad") as raised:
        await ClaudeBatchHook("claude_async_bad").aget_batch("msgbatch_x")
    assert BAD_KEY not in str(raised.value)


def test_a_redirect_to_another_origin_gets_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "claude_redirect", host="https://api.example.com", password=BAD_KEY)
    hook = ClaudeBatchHook("claude_redirect")
    results_url = "https://api.example.com/v1/messages/batches/msgbatch_r/results"
    monkeypatch.setattr(hook, "get_batch", lambda batch_id: {"id": batch_id, "results_url": results_url})
    seen: list[httpx.Request] = []
    body = b'{"custom_id":"a","result":{"type":"expired"}}\n{"custom_id":"b","result":{"type":"canceled"}}\n'

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/results"):
            return httpx.Response(302, headers={"location": "/v1/files/r?part=1"})
        return httpx.Response(307, headers={"location": "https://storage.example.net/signed?sig=abc"})

    def storage(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    stream = hook._stream_client
    hook._stream_client = httpx.Client(  # type: ignore[misc]
        base_url=stream.base_url, headers=stream.headers, transport=httpx.MockTransport(api)
    )
    hook._anonymous_client = httpx.Client(transport=httpx.MockTransport(storage))  # type: ignore[misc]
    assert [line["custom_id"] for line in hook.iter_results("msgbatch_r")] == ["a", "b"]
    assert [str(request.url) for request in seen] == [
        results_url,
        "https://api.example.com/v1/files/r?part=1",
        "https://storage.example.net/signed?sig=abc",
    ]
    for request in seen[:2]:
        assert BAD_KEY in " ".join(request.headers.values())
    assert BAD_KEY not in " ".join(seen[2].headers.values())
    assert seen[2].headers["accept"] == "application/binary"


def test_no_log_line_holds_the_key_even_at_debug(
    hook: ClaudeBatchHook, emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    shard = tmp_path / "shard.jsonl"
    created = hook.create_batch_from_file(shard, *write_shard(shard, 5))
    wait_until_ended(hook, created["id"])
    assert len(list(hook.iter_results(created["id"]))) == 5
    hook.create_batch([request(0)])
    captured = capsys.readouterr()
    assert "HTTP Request" in caplog.text  # the debug logs were captured
    for text in (caplog.text, captured.out, captured.err):
        assert emulator.api_key not in text


def test_the_connection_form_shows_the_fields_on_this_airflow() -> None:
    """What Airflow's UI serves for the connection form: extra fields and relabelled standard fields.

    Airflow 3.2 and later read them from the provider info; 3.1 from the hook's widgets.
    """
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "claude-batch")
    extra = meta.extra_fields or {}
    assert set(extra) == CONN_FIELDS
    assert "retries" in str(extra["max_retries"]).lower()
    assert meta.standard_fields is not None
    assert meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "Base URL"
    assert meta.standard_fields.login is not None
    assert meta.standard_fields.login.hidden
