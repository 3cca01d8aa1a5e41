"""Schema rules: the JSON Schema subset the API takes for structured output, and what it refuses."""

from __future__ import annotations

from airflow_claude_batch.core.api.schema_rules import schema_subset_problem
from airflow_claude_batch.core.requests.structured_output import api_schema, request_additions
from tests.core.request_rule_cases import RAW_SCHEMA, Review


def test_output_schema_is_sent_in_the_apis_subset_as_the_sdk_transforms_it() -> None:
    import anthropic

    for schema in (Review, RAW_SCHEMA):
        sent = request_additions("native", schema)["output_config"]["format"]["schema"]
        assert schema_subset_problem(sent) is None
        assert sent == anthropic.transform_schema(schema)
    sent = api_schema(Review)
    assert sent["additionalProperties"] is False
    assert "minimum: 1" in sent["properties"]["score"]["description"]
    assert "maxLength: 80" in sent["properties"]["summary"]["description"]
    assert "minItems: 3" in sent["properties"]["tags"]["description"]
    assert schema_subset_problem(Review.model_json_schema()) is not None  # raw, the API refuses it
