"""The API's account errors (the errors page: spend limits, billing, an organization on hold, a key
without permission), answered by the emulator's fault board over HTTP and read by the real SDK: each is
one ``AccountError`` that names the cause and what to do, is never retried, and makes no batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.exceptions import AccountError, BeforeSubmitError
from airflow_claude_batch.hooks.claude import ClaudeBatchHook
from tests.hooks.test_claude import request, write_shard

ACCOUNT_ERRORS = [
    pytest.param(
        {
            "status": 429,
            "error_code": "enforced_spend_limit_reached",
            "message": "Monthly usage limit reached",
        },
        "monthly spend limit of its usage tier",
        "raise the tier",
        id="usage-tier-spend-limit-429",
    ),
    pytest.param(
        {"status": 429, "error_code": "contract_spend_limit_reached", "message": "Contract limit reached"},
        "spend limit of its contract",
        "account team",
        id="contract-spend-limit-429",
    ),
    pytest.param(
        {
            "status": 400,
            "error_type": "invalid_request_error",
            "message": "You have reached your specified API usage limits. "
            "You will regain access on 2027-01-01 at 00:00 UTC.",
        },
        "spend limit set for the organization or the workspace",
        "Settings > Limits",
        id="own-spend-limit-400",
    ),
    pytest.param(
        {"status": 402, "error_type": "billing_error", "message": "Your credit balance is too low"},
        "billing problem",
        "payment details",
        id="billing-402",
    ),
    pytest.param(
        {
            "status": 400,
            "error_type": "invalid_request_error",
            "error_code": "organization_on_hold",
            "message": "This organization has been disabled.",
        },
        "on hold",
        "contact Anthropic",
        id="organization-on-hold-400",
    ),
    pytest.param(
        {"status": 403, "error_type": "permission_error", "message": "Not allowed"},
        "may not use this resource",
        "workspace wrkspc_01test",
        id="permission-403",
    ),
]


@pytest.fixture
def hook(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClaudeBatchHook]:
    connection = {
        "conn_type": "claude_batch",
        "host": emulator.base_url,
        "password": emulator.api_key,
        "extra": {"workspace_id": "wrkspc_01test"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_ACCOUNT", json.dumps(connection))
    hook = ClaudeBatchHook("claude_account")
    hook.test_connection()
    yield hook
    hook.close()


@pytest.mark.parametrize(("fault", "cause", "fix"), ACCOUNT_ERRORS)
def test_a_create_refused_for_the_account_says_why_and_what_to_do(
    hook: ClaudeBatchHook, emulator: Any, fault: dict[str, Any], cause: str, fix: str
) -> None:
    emulator.faults({"fail_next": {"endpoint": "create", "count": 1, **fault}})

    with pytest.raises(AccountError) as raised:
        hook.create_batch([request(0)])

    message = str(raised.value)
    assert cause in message
    assert fix in message
    assert "'claude_account'" in message
    assert isinstance(raised.value, BeforeSubmitError)  # a definite refusal: nothing was made
    stats = emulator.stats()
    assert stats["creates_received"] == 1
    assert stats["batches_created"] == 0


def test_a_spend_limit_429_on_a_first_read_is_not_waited_out(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first call goes through the package's own read retries (the SDK's are off until the Base URL
    # has answered): a spend limit's 429 is not retried there. Later calls use the SDK's retries, which
    # retry every 429 (``max_retries`` times) before the same AccountError.
    connection = {"conn_type": "claude_batch", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_CLAUDE_FRESH", json.dumps(connection))
    fresh = ClaudeBatchHook("claude_fresh")
    emulator.faults(
        {
            "fail_next": {
                "endpoint": "retrieve",
                "status": 429,
                "count": 5,
                "error_code": "enforced_spend_limit_reached",
            }
        }
    )

    with pytest.raises(AccountError, match="monthly spend limit"):
        fresh.get_batch("msgbatch_01abc")

    assert emulator.stats()["retrieves"] == 1
    fresh.close()


def test_a_plain_rate_limit_is_still_retried(hook: ClaudeBatchHook, emulator: Any) -> None:
    batch = hook.create_batch([request(0)])
    emulator.faults({"fail_next": {"endpoint": "retrieve", "status": 429, "count": 1, "retry_after": 0.05}})

    assert hook.get_batch(batch["id"])["id"] == batch["id"]


def test_the_streamed_create_of_a_shard_file_says_the_same(
    hook: ClaudeBatchHook, emulator: Any, tmp_path: Path
) -> None:
    # the submit's own create: a spend limit's 429 must fail the task, not be paced as a full queue
    shard = tmp_path / "shard.jsonl"
    count, size = write_shard(shard, 3)
    emulator.faults(
        {
            "fail_next": {
                "endpoint": "create",
                "status": 429,
                "count": 1,
                "error_code": "enforced_spend_limit_reached",
            }
        }
    )

    with pytest.raises(AccountError, match="monthly spend limit"):
        hook.create_batch_from_file(shard, count, size)

    assert emulator.stats()["batches_created"] == 0
