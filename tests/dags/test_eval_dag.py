"""The eval-sweep sample DAG runs for real against the emulator: four variants, one scored table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from airflow_claude_batch.emulator.answers.deterministic import answer_text
from tests.fixtures.airflow import DAGS_FOLDER

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
]

REPO = Path(__file__).resolve().parents[2]
EVAL = "prompt_model_eval"
VARIANTS = ("sonnet_full", "sonnet_short", "haiku_full", "haiku_short")


def test_the_eval_sweep_scores_each_variant_on_the_labelled_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any, run_dag: Any
) -> None:
    shutil.copytree(
        REPO / "dags", DAGS_FOLDER, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    cases_file = REPO / "dags" / "data" / "eval" / "labelled_tickets.jsonl"
    cases = [orjson.loads(line) for line in cases_file.read_bytes().splitlines()]
    assert len(cases) == 300
    assert {case["expected_label"] for case in cases} == {
        "billing",
        "bug",
        "feature_request",
        "account",
        "shipping",
        "other",
    }
    storage = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_CLAUDE_BATCH_STORAGE", f"file://{storage}")
    monkeypatch.setenv("CLAUDE_BATCH_POLL_INTERVAL", "0.5")

    dag_run = run_dag(DAGS_FOLDER / f"{EVAL}.py", EVAL)

    assert dag_run.state == "success"
    [eval_dir] = (storage / "eval").iterdir()
    table = json.loads((eval_dir / "accuracy.json").read_text())
    by_variant = {row["variant"]: row for row in table["variants"]}
    assert set(by_variant) == set(VARIANTS)
    prompts = {
        "full": (REPO / "dags" / "prompts" / "ticket_classifier.md").read_text(),
        "short": (REPO / "dags" / "prompts" / "ticket_classifier_short.md").read_text(),
    }
    for variant, row in by_variant.items():
        assert (row["cases"], row["answered"]) == (300, 300)
        assert row["cost_usd"] > 0
        # the same score as the emulator's answers give, case by case
        model_id = {"sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5-20251001"}[
            variant.split("_")[0]
        ]
        system = prompts[variant.split("_")[1]]
        expected = sum(
            orjson.loads(answer_text(system, case["text"], model_id))["label"] == case["expected_label"]
            for case in cases
        )
        assert row["correct"] == expected, variant
    assert len({row["accuracy"] for row in table["variants"]}) == 4  # the variants differ
    page = (eval_dir / "accuracy.html").read_text()
    assert all(variant in page for variant in VARIANTS)
    output = [orjson.loads(line) for line in (eval_dir / "haiku_short.jsonl").read_bytes().splitlines()]
    assert set(output[0]) == {"custom_id", "expected_label", "label", "confidence"}
