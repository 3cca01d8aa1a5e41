"""The flat-output ownership rule: which runs may replace ``output_uri``, and where the others write."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.output_owner import (
    OutputClaim,
    claim_output,
    owner_record_path,
    place_output,
)

DAY = ("2026-11-01T18:00:00+00:00", "2026-11-02T18:00:00+00:00")
TICKETS = ("file:///data/tickets/2026-11-02.jsonl",)


def claim(run_id: str = "scheduled__1", **changes: object) -> OutputClaim:
    base = OutputClaim("nightly", "classify", run_id, DAY, TICKETS, f"file:///runs/nightly/{run_id}/classify")
    return dataclasses.replace(base, **changes)


@pytest.fixture
def output(tmp_path: Path) -> Path:
    (tmp_path / "labels").mkdir()
    return tmp_path / "labels" / "2026-11-02.jsonl"


def folder(tmp_path: Path, run_id: str) -> RunFolder:
    return RunFolder.for_run(tmp_path / "runs", "nightly", run_id, "classify")


def test_the_first_run_owns_a_new_output_and_a_rerun_of_its_claim_replaces_it(tmp_path, output) -> None:
    first = place_output(output, folder(tmp_path, "a"), claim("a"), custom_input=False)
    assert first.owned
    assert first.target == output
    claim_output(output, claim("a"))
    output.write_text("{}\n")

    again = place_output(output, folder(tmp_path, "b"), claim("b"), custom_input=False)

    assert again.owned
    assert again.previous == claim("a")


@pytest.mark.parametrize(
    "other",
    [
        claim("b", sources=("file:///tmp/escalations.jsonl",)),
        claim("b", data_interval=("2026-11-02T18:00:00+00:00", "2026-11-03T18:00:00+00:00")),
        claim("b", data_interval=None),
        claim("b", pipeline_id="other"),
        claim("b", dag_id="other"),
        claim("b", sources=None),
    ],
    ids=["other-input", "other-interval", "no-interval", "other-pipeline", "other-dag", "unknown-input"],
)
def test_a_run_claiming_anything_else_writes_into_its_own_run_folder(tmp_path, output, other) -> None:
    claim_output(output, claim("a"))
    output.write_text("{}\n")

    place = place_output(output, folder(tmp_path, "b"), other, custom_input=False)

    assert not place.owned
    assert place.target == folder(tmp_path, "b").root / "output.jsonl"
    assert "owned by run a" in (place.reason or "")


def test_a_custom_input_never_writes_the_shared_output_even_when_nobody_owns_it(tmp_path, output) -> None:
    place = place_output(output, folder(tmp_path, "m"), claim("m"), custom_input=True)
    assert not place.owned
    assert not owner_record_path(output).exists()


def test_a_file_without_an_owner_record_is_never_replaced(tmp_path, output) -> None:
    output.write_text("{}\n")
    place = place_output(output, folder(tmp_path, "a"), claim("a"), custom_input=False)
    assert not place.owned
    assert "without an owner record" in (place.reason or "")


def test_a_run_over_the_interval_replaces_what_a_run_without_one_wrote_over_the_same_input(
    tmp_path, output
) -> None:
    claim_output(output, claim("manual", data_interval=None))
    output.write_text("{}\n")
    assert place_output(output, folder(tmp_path, "s"), claim("s"), custom_input=False).owned
    # ... but not the other way round.
    claim_output(output, claim("s"))
    place = place_output(output, folder(tmp_path, "m2"), claim("m2", data_interval=None), custom_input=False)
    assert not place.owned


def test_a_run_with_other_request_settings_writes_its_own_output_unless_asked_to_replace(
    tmp_path, output
) -> None:
    nightly = claim("nightly", params_digest="settings-of-the-nightly")
    claim_output(output, nightly)
    output.write_text("{}\n")
    experiment = claim("manual", data_interval=DAY, params_digest="another-model-and-max-tokens")

    place = place_output(output, folder(tmp_path, "manual"), experiment, custom_input=False)

    assert not place.owned
    assert place.target == folder(tmp_path, "manual").root / "output.jsonl"
    assert "request settings" in (place.reason or "")
    assert "replace_output=True" in (place.reason or "")
    replaced = place_output(
        output, folder(tmp_path, "manual"), experiment, custom_input=False, replace_output=True
    )
    assert replaced.owned
    # The same settings replace as before; replace_output never lifts the other rules.
    assert place_output(
        output, folder(tmp_path, "r"), claim("r", params_digest=nightly.params_digest), custom_input=False
    ).owned
    other_input = claim("x", sources=("file:///tmp/other.jsonl",), params_digest="another")
    assert not place_output(
        output, folder(tmp_path, "x"), other_input, custom_input=False, replace_output=True
    ).owned


def test_an_owner_record_without_a_settings_digest_is_read_and_never_a_difference(tmp_path, output) -> None:
    record = {**claim("old").to_dict(), "schema_version": 1}
    del record["params_digest"]
    owner_record_path(output).write_text(json.dumps(record))
    output.write_text("{}\n")

    assert place_output(
        output, folder(tmp_path, "new"), claim("new", params_digest="abc"), custom_input=False
    ).owned
