"""The model catalogue: exact ids and aliases, limits, and a user's file on top of the shipped one."""

from __future__ import annotations

import orjson
import pytest

from airflow_claude_batch.core.api.model_catalogue import (
    MODELS_ENV_VAR,
    ModelSpec,
    did_you_mean,
    load_models,
)
from airflow_claude_batch.core.money.pricing import PriceTable
from airflow_claude_batch.exceptions import InputError


def test_aliases_find_their_dated_model_and_ids_are_case_sensitive() -> None:
    haiku = load_models().get("claude-haiku-4-5")
    assert haiku.id == "claude-haiku-4-5-20251001"
    assert load_models().get("claude-haiku-4-5-20251001") is haiku
    assert load_models().find("Claude-Haiku-4-5") is None
    assert load_models().find("claude-haiku-4.5") is None
    with pytest.raises(InputError, match="case-sensitive"):
        load_models().get("claude-does-not-exist-9")


def test_documented_cache_minimums_and_tokenizer_ratios() -> None:
    assert load_models().get("claude-sonnet-4-5").min_cacheable_tokens == 1024
    assert load_models().get("claude-sonnet-4-6").min_cacheable_tokens == 1024
    assert load_models().get("claude-haiku-4-5").min_cacheable_tokens == 4096
    assert load_models().get("claude-opus-4-5").min_cacheable_tokens == 4096
    # The newer tokenizer (Opus 4.7 on) makes more tokens of the same text.
    text_chars = 1200
    older = load_models().get("claude-opus-4-6").estimate_tokens(text_chars)
    newer = load_models().get("claude-opus-4-7").estimate_tokens(text_chars)
    assert older == 300
    assert newer > older


def test_every_model_is_complete() -> None:
    catalogue = load_models()
    assert len(catalogue) >= 8
    for spec in catalogue:
        assert isinstance(spec, ModelSpec)
        assert spec.max_output_tokens <= spec.context_window
        assert spec.family in {"haiku", "sonnet", "opus"}
    listed = [spec.created_at for spec in catalogue]
    assert listed == sorted(listed, reverse=True)


def test_a_user_file_overrides_fields_and_adds_models(tmp_path, monkeypatch) -> None:
    user_file = tmp_path / "models.json"
    user_file.write_bytes(
        orjson.dumps(
            {
                "models": {
                    "claude-sonnet-4-6": {"max_output_tokens": 1000},
                    "claude-house-1": {
                        "display_name": "House model",
                        "family": "sonnet",
                        "max_output_tokens": 2048,
                        "context_window": 8192,
                        "min_cacheable_tokens": 256,
                        "chars_per_token": 3.5,
                        "aliases": ["house"],
                    },
                }
            }
        )
    )
    monkeypatch.setenv(MODELS_ENV_VAR, str(user_file))
    catalogue = load_models()
    assert catalogue.get("claude-sonnet-4-6").max_output_tokens == 1000
    assert catalogue.get("claude-sonnet-4-6").context_window == 1_000_000
    house = catalogue.get("house")
    assert (house.id, house.created_at, house.estimate_tokens(7)) == (
        "claude-house-1",
        "1970-01-01T00:00:00Z",
        2,
    )
    assert str(user_file) in catalogue.sources


@pytest.mark.parametrize(
    "entry",
    [
        {"display_name": "x"},
        {
            "display_name": "x",
            "family": "opus",
            "max_output_tokens": 0,
            "context_window": 1,
            "min_cacheable_tokens": 1,
            "chars_per_token": 4,
        },
    ],
)
def test_an_invalid_user_entry_is_refused_with_what_to_fix(tmp_path, entry) -> None:
    user_file = tmp_path / "bad.json"
    user_file.write_bytes(orjson.dumps({"models": {"claude-bad-1": entry}}))
    with pytest.raises(InputError, match="claude-bad-1"):
        load_models(user_file)


def test_a_missing_user_file_says_which(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read the models file"):
        load_models(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("claude-sonet-4-6", "claude-sonnet-4-6"),
        ("Claude-Haiku-4-5", "claude-haiku-4-5"),
        ("claude-opus-4.6", "claude-opus-4-6"),
    ],
)
def test_a_model_id_close_to_a_known_one_gets_did_you_mean(typed: str, meant: str) -> None:
    with pytest.raises(InputError, match=f"did you mean '{meant}'"):
        load_models().get(typed)


def test_a_model_without_a_price_gets_did_you_mean_too() -> None:
    with pytest.raises(InputError, match="did you mean 'claude-sonnet-4-6'"):
        PriceTable.load().price("claude-sonet-4-6")


def test_a_model_id_far_from_every_known_one_gets_no_guess() -> None:
    assert did_you_mean("gpt-4o") == ""
    assert did_you_mean("claude-sonnet-4-6") == ""  # known: nothing to suggest
