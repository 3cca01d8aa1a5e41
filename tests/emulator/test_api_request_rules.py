"""The emulator refuses what the API refuses, through the real anthropic SDK over HTTP: each rule's
request ends ``errored`` with ``invalid_request_error`` and the rule's message, the same request fixed
succeeds, and the two come from the one rule set the build reads (``core/api/request_rules.py``)."""

from __future__ import annotations

import anthropic
import pytest

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.core.api.request_rules import OUTPUT_300K_BETA, first_violation
from airflow_claude_batch.core.requests.structured_output import request_additions
from airflow_claude_batch.core.results.answer_parsing import InvalidOutput, OutputValidator
from tests.core.request_rule_cases import CASES, Review, params

MODELS = load_models()


def _headers(version: str, betas: tuple[str, ...]) -> dict[str, str]:
    headers = {"anthropic-version": version}
    if betas:
        headers["anthropic-beta"] = ",".join(betas)
    return headers


def _results(sdk: anthropic.Anthropic, requests: list[dict], version: str, betas: tuple[str, ...] = ()):
    headers = _headers(version, betas)
    batch = sdk.messages.batches.create(requests=requests, extra_headers=headers)
    for _ in range(400):
        if sdk.messages.batches.retrieve(batch.id, extra_headers=headers).processing_status == "ended":
            break
    else:
        raise AssertionError(f"batch {batch.id} did not end")
    return {
        item.custom_id: item.result for item in sdk.messages.batches.results(batch.id, extra_headers=headers)
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_emulator_errors_the_request_with_the_apis_message(sdk: anthropic.Anthropic, name: str) -> None:
    case = CASES[name]
    bad = _results(sdk, [{"custom_id": "bad", "params": case.bad}], case.version, case.betas)["bad"]
    expected = first_violation(
        case.bad, MODELS.get(case.bad["model"]), version=case.version, betas=case.betas
    )
    assert bad.type == "errored"
    assert bad.error.error.type == "invalid_request_error"
    assert bad.error.error.message == expected.message
    good_betas = case.good_betas if case.good_betas is not None else case.betas
    good = _results(
        sdk, [{"custom_id": "good", "params": case.good}], case.good_version or case.version, good_betas
    )
    assert good["good"].type == "succeeded", good["good"]


@pytest.mark.parametrize("header", ["", ","])
def test_an_empty_beta_header_is_refused_at_the_front_door(sdk: anthropic.Anthropic, header: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match="anthropic-beta: the header is empty"):
        sdk.messages.batches.create(
            requests=[{"custom_id": "a", "params": params()}], extra_headers={"anthropic-beta": header}
        )


def test_max_tokens_300k_with_the_beta_succeeds_on_opus_4_6(sdk: anthropic.Anthropic) -> None:
    requests = [{"custom_id": "long", "params": params("claude-opus-4-6", max_tokens=300_000)}]
    assert _results(sdk, requests, "2023-06-01", (OUTPUT_300K_BETA,))["long"].type == "succeeded"
    assert _results(sdk, requests, "2023-06-01")["long"].type == "errored"


def test_a_pydantic_schema_round_trips_sent_in_the_subset_and_checked_against_the_full_model(
    sdk: anthropic.Anthropic,
) -> None:
    raw = params(output_config={"format": {"type": "json_schema", "schema": Review.model_json_schema()}})
    sent = params(**request_additions("native", Review))
    results = _results(
        sdk, [{"custom_id": "raw", "params": raw}, {"custom_id": "sent", "params": sent}], "2023-06-01"
    )
    assert results["raw"].type == "errored"  # the raw Pydantic schema (minimum, maxLength...) is refused
    assert "additionalProperties" in results["raw"].error.error.message  # Pydantic leaves objects open
    assert results["sent"].type == "succeeded"
    message = results["sent"].message.model_dump(mode="json")
    text = message["content"][0]["text"]
    # The subset the API decodes to drops ge/le, max_length and min_length=3 (the emulator, like the
    # model, may break them); the answer is held to the user's full model, so such an answer is invalid.
    with pytest.raises(InvalidOutput, match=r"score|tags|summary"):
        OutputValidator(output_schema=Review).parse(text, message)
