"""The model is checked with the models endpoint (the real SDK against the emulator) before spend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_claude_batch.core.api import model_check
from airflow_claude_batch.core.api.model_check import check_model
from airflow_claude_batch.exceptions import InputError
from airflow_claude_batch.hooks.claude import ClaudeBatchHook


@pytest.fixture(autouse=True)
def _fresh_answers() -> Iterator[None]:
    model_check._answers.clear()
    yield
    model_check._answers.clear()


@pytest.fixture
def hook(emulator: Any) -> Iterator[ClaudeBatchHook]:
    hook = ClaudeBatchHook()
    yield hook
    hook.close()


def test_a_model_written_differently_is_refused_with_the_right_name(hook: ClaudeBatchHook) -> None:
    assert check_model("claude-sonnet-4-6", 1024, hook.get_model_info) is True
    with pytest.raises(InputError, match="did you mean 'claude-sonnet-4-6'"):
        check_model("Claude-Sonnet-4-6", 1024, hook.get_model_info)


def test_max_tokens_over_the_models_output_limit_is_refused(hook: ClaudeBatchHook) -> None:
    limit = hook.get_model_info("claude-haiku-4-5")["max_tokens"]
    check_model("claude-haiku-4-5", limit, hook.get_model_info)
    with pytest.raises(InputError, match=f"over the output limit of claude-haiku-4-5 \\({limit}\\)"):
        check_model("claude-haiku-4-5", limit + 1, hook.get_model_info)


def test_answers_are_kept_so_a_run_asks_once() -> None:
    asked: list[str] = []

    def lookup(model: str) -> dict[str, Any]:
        asked.append(model)
        return {"id": model, "max_tokens": 100}

    check_model("m", 10, lookup, endpoint="a")
    check_model("m", 20, lookup, endpoint="a")
    assert asked == ["m"]


def test_no_answer_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    def unreachable(model: str) -> dict[str, Any]:
        raise ConnectionError("no route to host")

    with caplog.at_level(logging.WARNING):
        assert check_model("claude-sonnet-4-6", 1024, unreachable) is False
    assert "check_model=False" in caplog.text


def test_max_tokens_up_to_300k_passes_with_the_output_300k_beta_where_the_model_allows_it() -> None:
    def lookup(model: str) -> dict[str, Any]:
        return {"id": model, "max_tokens": 128_000}  # the endpoint reports the limit without the beta

    beta = ("output-300k-2026-03-24",)
    assert check_model("claude-opus-4-6", 300_000, lookup, endpoint="a", betas=beta)
    with pytest.raises(InputError, match="over the output limit"):
        check_model("claude-opus-4-6", 300_000, lookup, endpoint="b")
    with pytest.raises(InputError, match="over the output limit"):
        check_model("claude-opus-5", 300_000, lookup, endpoint="c", betas=beta)
