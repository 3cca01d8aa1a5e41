"""The API's request rules: each one refuses its request and takes the same request fixed, the build
refuses it naming the record, the rule and the fix, and docs/architecture.md lists it with its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.core.api.request_rules import (
    ALL_RULES,
    OUTPUT_300K_BETA,
    beta_header_violation,
    first_violation,
    max_output_tokens,
)
from airflow_claude_batch.core.requests.rendering import RequestTemplate
from airflow_claude_batch.core.requests.request_stream import iter_requests
from airflow_claude_batch.core.requests.sources import CallableRecords
from airflow_claude_batch.core.requests.structured_output import request_additions
from airflow_claude_batch.exceptions import InputError
from tests.core.request_rule_cases import CASES, RuleCase, Tree

ARCHITECTURE = (Path(__file__).resolve().parents[3] / "docs" / "architecture.md").read_text(encoding="utf-8")
MODELS = load_models()


def _violation(case: RuleCase, *, good: bool = False):
    params = case.good if good else case.bad
    version = (case.good_version or case.version) if good else case.version
    betas = case.good_betas if good and case.good_betas is not None else case.betas
    return first_violation(params, MODELS.get(params["model"]), version=version, betas=betas)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_rule_refuses_its_request_and_takes_it_fixed(name: str) -> None:
    case = CASES[name]
    violation = _violation(case)
    assert violation is not None
    assert violation.rule == case.rule, violation
    assert violation.source.startswith("https://platform.claude.com/docs/")
    assert _violation(case, good=True) is None


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_build_refuses_the_request_naming_the_record_the_rule_and_the_fix(name: str) -> None:
    case = CASES[name]

    def build(params, version, betas):
        records = CallableRecords(lambda: [{"id": "ok-1"}, {"id": "bad-2"}])
        template = RequestTemplate(
            render=lambda record: params if record["id"] == "bad-2" else CASES["prefill"].good,
            anthropic_version=version,
            betas=betas,
        )
        return list(iter_requests(records, template))

    with pytest.raises(InputError) as refused:
        build(case.bad, case.version, case.betas)
    message = str(refused.value)
    violation = _violation(case)
    assert refused.value.location == "<lambda>():2"  # the second record, not the first
    assert f"rule {case.rule!r}" in message
    assert "Fix: " in message
    assert violation.fix in message
    assert violation.source in message
    good_betas = case.good_betas if case.good_betas is not None else case.betas
    assert len(build(case.good, case.good_version or case.version, good_betas)) == 2


def test_every_rule_is_listed_in_the_architecture_page_with_its_source() -> None:
    section = ARCHITECTURE.split("### The API's request rules", 1)[1].split("\n## ", 1)[0]
    for case in CASES.values():
        row = re.search(rf"^\| `{re.escape(case.rule)}` \|.*$", section, re.M)
        assert row, f"docs/architecture.md lists no rule {case.rule!r}"
        assert _violation(case).source in row.group(0), f"the row of {case.rule!r} names another source"
    assert len({rule.__name__ for rule in ALL_RULES}) == len(ALL_RULES)


def test_an_empty_beta_header_is_refused_and_none_or_a_named_beta_is_not() -> None:
    assert beta_header_violation("").rule == "empty-beta-header"
    assert beta_header_violation(" , ").rule == "empty-beta-header"
    assert beta_header_violation(None) is None
    assert beta_header_violation(OUTPUT_300K_BETA) is None


@pytest.mark.parametrize(
    ("model", "limit"),
    [("claude-opus-4-6", 300_000), ("claude-opus-4-7", 300_000), ("claude-sonnet-4-6", 300_000),
     ("claude-haiku-4-5", 64_000), ("claude-opus-5", 128_000)],
)  # fmt: skip
def test_the_output_300k_beta_lifts_max_tokens_only_where_the_api_allows_it(model: str, limit: int) -> None:
    spec = MODELS.get(model)
    assert max_output_tokens(spec, (OUTPUT_300K_BETA,)) == limit
    assert max_output_tokens(spec) == spec.max_output_tokens


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [({"type": "object", "properties": {"x": {"description": "no type"}}}, "type"),
     ({"type": "array", "items": {"type": "string"}}, "object"),
     (Tree, "recursive")],
)  # fmt: skip
def test_a_schema_the_api_cannot_take_at_all_is_refused_at_build_naming_the_keyword(schema, keyword) -> None:
    with pytest.raises(InputError, match=keyword):
        request_additions("native", schema)


def test_a_template_prompt_past_the_context_window_is_refused_naming_its_record() -> None:
    spec = MODELS.get("claude-haiku-4-5")
    fits = "a" * int(spec.context_window * spec.chars_per_token - 100)
    records = CallableRecords(lambda: [{"id": "r1", "text": fits}, {"id": "r2", "text": fits + "a" * 200}])
    with pytest.raises(InputError, match="rule 'context-window'") as refused:
        list(iter_requests(records, RequestTemplate(model="claude-haiku-4-5", system="Sort tickets.")))
    assert refused.value.location == "<lambda>():2"
