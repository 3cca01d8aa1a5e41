"""``make demo``: its printed summary agrees with the manifest and the output files, line by line."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from demo import nightly as demo

REPO = Path(__file__).resolve().parents[2]
TICKETS = 200


def summary_fields(output: str) -> dict[str, str]:
    """Map each summary line's label (``records``, ``labels``, ``cost`` ...) to its text."""
    fields: dict[str, str] = {}
    for line in output.splitlines():
        match = re.match(r"^  (\w+)\s{2,}(.*)$", line)
        if match:
            assert match.group(1) not in fields, f"{match.group(1)} printed twice"
            fields[match.group(1)] = match.group(2)
    return fields


def money(text: str) -> list[float]:
    return [float(value) for value in re.findall(r"\$(\d+\.\d+)", text)]


@pytest.mark.airflow
@pytest.mark.timeout(900)  # the whole demo (3,000 records); about 30 s alone, far longer on a loaded machine
def test_demo_summary_matches_the_manifest_and_the_labels_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tickets = tmp_path / "tickets.jsonl"
    sample = (REPO / "dags" / "data" / "tickets" / "sample.jsonl").read_text().splitlines()
    tickets.write_text("\n".join(sample[:TICKETS]) + "\n")

    code = demo.main(
        ["--workdir", str(tmp_path / "demo"), "--tickets", str(tickets), "--expire-fraction", "0.1"]
    )

    output = capsys.readouterr().out
    assert code == 0, output
    fields = summary_fields(output)
    manifest_path = Path(fields["manifest"])
    manifest = json.loads(manifest_path.read_text())
    done = manifest["dispositions"]
    assert fields["records"] == (
        f"{TICKETS} tickets: {done['succeeded']} labelled, {done['invalid_output']} invalid output, "
        f"{done['dead_lettered']} dead-lettered, {done['pending']} pending"
    )
    assert manifest["input_records"] == TICKETS
    rounds_run = [entry for entry in manifest["rounds"] if entry["requests"]]
    requeued = manifest["rounds"][0]["requeued"]
    assert requeued == manifest["rounds"][0]["outcomes"]["expired"] > 0  # the injected expiry
    assert len(rounds_run) == len(manifest["batch_ids"]) == 2
    assert fields["batches"] == f"2 batches in 2 rounds, {requeued} requests requeued"
    actual, synchronous, saved = money(fields["cost"])
    assert actual == round(manifest["money"]["actual_usd"], 4)
    assert synchronous == round(manifest["money"]["synchronous_equivalent_usd"], 4)
    assert saved == round(manifest["money"]["savings_usd"], 4)
    assert 0 < actual < synchronous
    expected, upper = money(fields["estimate"])
    assert expected == round(manifest["money"]["estimated_expected_usd"], 4)
    assert upper == round(manifest["money"]["estimated_upper_usd"], 4)
    assert "no earlier run: defaults" in fields["estimate"]
    assert f"cache hit rate {100 * manifest['cache_hit_rate']:.1f} %" in fields["estimate"]

    labels_file = Path(fields["output"])
    assert str(labels_file) == manifest["files"]["output"].removeprefix("file://")
    rows = [json.loads(line) for line in labels_file.read_text().splitlines()]
    assert len(rows) == done["succeeded"]
    counts = Counter(row["label"] for row in rows)
    printed = dict(re.findall(r"(\w+) (\d+)", fields["labels"]))
    assert {label: int(count) for label, count in printed.items()} == dict(counts)
    assert Path(fields["report"]).exists()
    airflow_output = Path(fields["log"]).read_text()
    assert airflow_output
    errors = [line for line in airflow_output.splitlines() if "[error" in line]
    assert not errors, f"Airflow logged errors in a run that succeeded: {errors[:3]}"
