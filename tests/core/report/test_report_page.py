"""The report page: the manifest's figures, inline SVG charts, nothing external, every value escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from airflow_claude_batch.core.money.run_totals import Money
from airflow_claude_batch.core.report.manifest import Manifest, RoundLedger
from airflow_claude_batch.core.report.report_page import render_report

EVIL_ID = '<script>alert("x")</script>'


def manifest() -> Manifest:
    def round_(index: int, outcomes: dict[str, int], requeued: int) -> RoundLedger:
        return RoundLedger(
            round=index,
            shards=1,
            requests=sum(outcomes.values()),
            batch_ids=[f"msgbatch_{index}"],
            outcomes=outcomes,
            requeued=requeued,
            dead_lettered=1 if index == 0 else 0,
            pending=0,
            sync_retry={"succeeded": 0, "invalid_output": 0, "errored": 0},
            tokens={"input": 10, "output": 5, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0},
            batch_usd=0.25,
            sync_retry_usd=0.0,
            requeue_ran=index == 0,
            unfinished_shards=0,
        )

    return Manifest(
        run_uri="file:///runs/dag/run_<1>",
        input_records=1234,
        max_rounds=2,
        rounds=[
            round_(
                0, {"succeeded": 1200, "invalid_output": 3, "errored": 11, "expired": 20, "canceled": 0}, 30
            ),
            round_(1, {"succeeded": 30, "invalid_output": 0, "errored": 0, "expired": 0, "canceled": 0}, 0),
        ],
        outcomes={"succeeded": 1230, "invalid_output": 3, "errored": 11, "expired": 20, "canceled": 0},
        dispositions={"succeeded": 1230, "invalid_output": 3, "dead_lettered": 1, "pending": 0},
        reconciled=True,
        notes=[],
        warnings=[],
        batch_ids=["msgbatch_0", "msgbatch_1"],
        tokens={"input": 20, "output": 10, "cache_write_5m": 0, "cache_write_1h": 0, "cache_read": 0},
        tokens_by_model={"claude-sonnet-4-6": {"input": 20, "output": 10}},
        money=Money(
            estimated_upper_usd=1.5,
            estimated_expected_usd=0.9,
            batch_usd=0.5,
            sync_retry_usd=0.0,
            actual_usd=0.5,
            synchronous_equivalent_usd=1.0,
            savings_usd=0.5,
            savings_pct=50.0,
        ),
        files={"manifest": "manifest.json", "dead_letter": "dead-letter.jsonl", "pending": "pending.jsonl"},
        price_sources=["prices.json"],
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_the_page_shows_the_figures_and_two_inline_charts() -> None:
    page = render_report(manifest())
    text = " ".join(parse(page).text)
    for figure in ("1,234", "1,230", "1,200", "$0.5000", "$1.00", "$1.50", "50.0 %", "msgbatch_1"):
        assert figure in text
    assert page.count("<svg") == 2
    assert "Reconciled" in text
    # one bar per non-empty outcome of each round in the outcome chart: 4 in round 0, 1 in round 1
    outcome_chart = page.split("<svg")[1]
    assert len(re.findall(r"<rect [^>]*height=\"26\"", outcome_chart)) == 5


def test_the_page_needs_nothing_from_the_network() -> None:
    collector = parse(render_report(manifest()))
    assert "script" not in collector.tags
    assert "link" not in collector.tags
    urls = [value for name, value in collector.attributes if name in ("src", "href") and value]
    assert urls == []
    assert all(
        value == "http://www.w3.org/2000/svg"
        for name, value in collector.attributes
        if value and "://" in value
    )


def test_every_user_value_is_escaped() -> None:
    samples = {
        "dead_letter": [
            {
                "custom_id": EVIL_ID,
                "round": 0,
                "reason": "non-retryable error",
                "error_type": "invalid_request_error",
                "message": "<img src=x onerror=alert(1)>",
            }
        ],
        "pending": [],
    }
    page = render_report(manifest(), samples)
    assert EVIL_ID not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "run_&lt;1&gt;" in page
    assert "script" not in parse(page).tags


def test_an_unreconciled_run_says_so_with_its_notes() -> None:
    broken = manifest()
    broken = Manifest(**{**broken.__dict__, "reconciled": False, "notes": ["round 0: 3 requests but 2 rows"]})
    text = " ".join(parse(render_report(broken)).text)
    assert "Not reconciled" in text
    assert "round 0: 3 requests but 2 rows" in text


def test_the_estimate_stands_beside_the_actual_with_the_hit_rate_and_earlier_runs() -> None:
    import dataclasses

    from airflow_claude_batch.core.money.cost_history import RunCost
    from airflow_claude_batch.core.money.tokens import TokenTotals

    run = dataclasses.replace(
        manifest(),
        cache_hit_rate=0.8123,
        estimate={
            "basis": {"kind": "history", "runs": 2},
            "inputs": {"cache_hit_rate": 0.75},
            "budget_basis": "upper",
        },
        prices={
            "as_of": "2026-12-02",
            "source": "https://example.test/pricing",
            "not_modelled": ["fast mode"],
        },
    )
    earlier = RunCost(
        "scheduled__2026-11-01",
        "2026-11-01T18:00:00+00:00",
        1000,
        990,
        10,
        TokenTotals(1, 2, 0, 10, 90),
        5000,
        0.41,
        1.2,
        0.4321,
    )
    page = render_report(run, history=[earlier])

    assert "estimate (expected)" in page
    assert "estimate (upper)" in page
    assert "$0.9000 (learned from 2 earlier run(s))" in page
    assert "75.0 % / 81.2 %" in page  # expected / actual hit rate
    assert "against the upper figure" in page
    assert "Cost per run of this pipeline" in page
    assert "scheduled__2026-11-01" in page
    assert "$0.4321" in page
    assert "90.0 %" in page  # the earlier run's hit rate: 90 reads of 100 cached tokens
    assert "as of 2026-12-02" in page
    assert "fast mode" in page
