"""Deterministic answers for the sample workloads, realistic usage, and the prompt cache."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.emulator import EmulatorConfig, EmulatorServer
from airflow_claude_batch.emulator.answers import deterministic
from airflow_claude_batch.emulator.store import digests
from tests.emulator.builders import request, requests

CLASSIFIER_SYSTEM = (
    "You sort support tickets.\nLabels: billing, bug, feature_request, account, shipping, other\n"
)
MODERATION_SYSTEM = "You review posts.\nPolicy version: 2025-11\nAnswer in JSON."


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I was charged twice, please refund the payment", "billing"),
        ("The app crashes with an error when I open it", "bug"),
        ("It would be great if you could add a dark mode feature", "feature_request"),
        ("I cannot login, my password reset link fails to arrive", "account"),
        ("Where is my package? The tracking number shows nothing", "shipping"),
        ("My invoice has the wrong price", "billing"),
    ],
)
def test_classifier_picks_the_label_by_keywords(text, label):
    answer = orjson.loads(deterministic.answer_text(CLASSIFIER_SYSTEM, text))
    assert answer["label"] == label
    assert 0.75 <= answer["confidence"] <= 0.99


def test_classifier_uses_the_label_names_from_the_prompt():
    system = "Labels: urgent-outage, sales_lead"
    assert orjson.loads(deterministic.answer_text(system, "We have an outage!"))["label"] == "urgent-outage"
    assert (
        orjson.loads(deterministic.answer_text(system, "A new lead from the fair"))["label"] == "sales_lead"
    )


def test_classifier_falls_back_to_a_stable_label():
    text = "Quarterly musings about weather and tea."
    first = orjson.loads(deterministic.answer_text(CLASSIFIER_SYSTEM, text))
    assert first["label"] in {"billing", "bug", "feature_request", "account", "shipping", "other"}
    assert 0.50 <= first["confidence"] <= 0.74
    assert round(first["confidence"], 2) == first["confidence"]
    assert deterministic.answer_text(CLASSIFIER_SYSTEM, text) == deterministic.answer_text(
        CLASSIFIER_SYSTEM, text
    )
    labels_seen = {
        orjson.loads(deterministic.answer_text(CLASSIFIER_SYSTEM, f"note {index}"))["label"]
        for index in range(60)
    }
    assert len(labels_seen) > 2


@pytest.mark.parametrize(
    ("text", "verdict", "category"),
    [
        ("You are a stupid idiot", "flag", "harassment"),
        ("Click here for free money, buy now!", "flag", "spam"),
        ("I will attack you with a weapon", "flag", "violence"),
        ("I want to end my life", "flag", "self_harm"),
        ("Lovely weather at the lake today", "allow", "none"),
    ],
)
def test_moderation_verdicts(text, verdict, category):
    answer = orjson.loads(deterministic.answer_text(MODERATION_SYSTEM, text))
    assert answer["verdict"] == verdict
    assert answer["category"] == category
    assert answer["policy_version"] == "2025-11"
    assert answer["reason"]


def test_other_prompts_get_a_short_text_from_the_user_turn():
    answer = deterministic.answer_text("Be helpful.", "Summarise the history of the printing press please")
    assert answer.startswith("Answer to: Summarise the history")
    assert answer == deterministic.answer_text(
        "Be helpful.", "Summarise the history of the printing press please"
    )
    assert answer != deterministic.answer_text(
        "Be helpful.", "Summarise the history of the steam engine please"
    )


def test_usage_estimates_input_from_characters_and_caps_output():
    params = request("a", text="x" * 400, system="y" * 100, max_tokens=3)["params"]
    haiku = load_models().get("claude-haiku-4-5")
    digest = digests.digest_request("a", params, haiku)
    assert digest.input_tokens == 125
    assert digests.count_input_tokens(params, haiku) == 125
    (block,) = digest.reply.blocks()
    assert digest.reply.stop_reason == "max_tokens"
    assert digest.reply.output_tokens == 3
    assert len(block["text"]) == 12


def test_tokens_follow_the_model_tokenizer():
    params = request("a", text="x" * 400, system="y" * 100, model="claude-opus-4-7")["params"]
    newer = digests.count_input_tokens(params, load_models().get("claude-opus-4-7"))
    assert newer == 167  # 3 characters a token: the newer tokenizer makes more tokens of the same text
    assert newer > digests.count_input_tokens(params, load_models().get("claude-haiku-4-5"))


def test_max_tokens_cut_shows_in_the_result(sdk):
    batch = sdk.messages.batches.create(
        requests=[request("short", max_tokens=2, system=CLASSIFIER_SYSTEM, text="refund please")]
    )
    for _ in range(200):
        if sdk.messages.batches.retrieve(batch.id).processing_status == "ended":
            break
    (result,) = list(sdk.messages.batches.results(batch.id))
    message = result.result.message
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2
    assert message.content[0].text == '{"label"'


# Above Haiku 4.5's minimum cacheable length (4,096 tokens at 4 characters a token).
CACHED_CHARS = 20_000


def _cached_system(ttl: str | None = None, chars: int = CACHED_CHARS) -> list[dict]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": CLASSIFIER_SYSTEM + "z" * chars, "cache_control": control}]


def _usages(client: anthropic.Anthropic, clock, batch_requests: list[dict]) -> list:
    batch = client.messages.batches.create(requests=batch_requests)
    clock.advance(len(batch_requests) + 3.0)
    return [result.result.message.usage for result in client.messages.batches.results(batch.id)]


def test_cached_prefix_is_written_once_then_read(clocked_client, clock):
    system = _cached_system()
    prefix_tokens = load_models().get("claude-haiku-4-5").estimate_tokens(len(system[0]["text"]))
    usages = _usages(clocked_client, clock, requests(5, system=system))
    writes = [usage for usage in usages if usage.cache_creation_input_tokens]
    reads = [usage for usage in usages if usage.cache_read_input_tokens]
    assert len(writes) == 1
    assert len(reads) == 4
    assert writes[0].cache_creation_input_tokens == prefix_tokens
    assert writes[0].cache_creation.ephemeral_5m_input_tokens == prefix_tokens
    assert writes[0].cache_creation.ephemeral_1h_input_tokens == 0
    assert all(usage.cache_read_input_tokens == prefix_tokens for usage in reads)
    # The cached part is not counted again as plain input.
    assert all(usage.input_tokens < 20 for usage in usages)

    # A later batch within the TTL reads; after the 5-minute TTL lapses the prefix is written again.
    assert _writes(_usages(clocked_client, clock, requests(2, system=system))) == 0
    clock.advance(301.0)
    later = _usages(clocked_client, clock, requests(2, system=system))
    assert _writes(later) == 1


def test_one_hour_ttl_is_reported_as_such(clocked_client, clock):
    usages = _usages(clocked_client, clock, requests(2, system=_cached_system(ttl="1h")))
    (write,) = [usage for usage in usages if usage.cache_creation_input_tokens]
    assert write.cache_creation.ephemeral_1h_input_tokens == write.cache_creation_input_tokens
    assert write.cache_creation.ephemeral_5m_input_tokens == 0
    clock.advance(1800.0)
    again = _usages(clocked_client, clock, requests(2, system=_cached_system(ttl="1h")))
    assert all(usage.cache_read_input_tokens for usage in again)


def test_prefix_below_the_model_minimum_is_not_cached(clocked_client, clock):
    # About 2,500 tokens: under Haiku 4.5's 4,096-token minimum, over Sonnet 4.6's 1,024.
    system = _cached_system(chars=10_000)
    usages = _usages(clocked_client, clock, requests(3, system=system))
    assert all(usage.cache_creation_input_tokens == 0 for usage in usages)
    assert all(usage.cache_read_input_tokens == 0 for usage in usages)
    assert all(usage.input_tokens > 2500 for usage in usages)
    sonnet = _usages(clocked_client, clock, requests(3, system=system, model="claude-sonnet-4-6"))
    assert _writes(sonnet) == 1


def _writes(usages: list) -> int:
    return sum(1 for usage in usages if usage.cache_creation_input_tokens)


def test_cache_is_per_api_key(clock):
    system = _cached_system()
    with EmulatorServer(
        EmulatorConfig(api_key=None, speed=1.0, cache_hit_rate=1.0, rpm_limit=None), clock=clock
    ) as server:
        first, second = (
            anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
            for key in ("first-key", "second-key")
        )
        assert _writes(_usages(first, clock, requests(2, system=system))) == 1
        assert _writes(_usages(second, clock, requests(2, system=system))) == 1
        assert _writes(_usages(first, clock, requests(2, system=system))) == 0


def test_answers_are_the_same_across_batches(sdk):
    texts = ["refund me", "app crashes", "lost package"]
    batch_requests = [
        request(f"t{index}", text=text, system=CLASSIFIER_SYSTEM) for index, text in enumerate(texts)
    ]
    outputs = []
    for _ in range(2):
        batch = sdk.messages.batches.create(requests=batch_requests)
        for _ in range(200):
            if sdk.messages.batches.retrieve(batch.id).processing_status == "ended":
                break
        outputs.append(
            {r.custom_id: r.result.message.content[0].text for r in sdk.messages.batches.results(batch.id)}
        )
    assert outputs[0] == outputs[1]
    assert [orjson.loads(outputs[0][f"t{index}"])["label"] for index in range(3)] == [
        "billing",
        "bug",
        "shipping",
    ]
