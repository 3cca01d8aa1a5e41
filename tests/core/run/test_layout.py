from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.build.input_change import write_answered_earlier
from airflow_claude_batch.core.build.input_fingerprint import InputFingerprint, write_fingerprint
from airflow_claude_batch.core.money.budget import RoundBudget
from airflow_claude_batch.core.report.ledger import write_ledger
from airflow_claude_batch.core.report.report_page import write_report
from airflow_claude_batch.core.requests.passthrough import write_passthrough
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.sync_retry import SyncRetry
from airflow_claude_batch.core.results.fanout import fan_out_shard
from airflow_claude_batch.core.run.cancel_record import write_cancel
from airflow_claude_batch.core.run.claims import Claim, ClaimsIndex
from airflow_claude_batch.core.run.layout import RunFolder, claim_file, claims_folder, safe_segment
from airflow_claude_batch.core.run.outcomes import ROW_OUTCOMES
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.shards import ShardDescriptor
from airflow_claude_batch.core.run.storage import atomic_writer, write_json
from airflow_claude_batch.core.submit.state import SubmitState, write_state
from airflow_claude_batch.exceptions import InputError
from tests.core.batch_results import (
    MODEL,
    PRICES,
    canceled,
    errored,
    expired,
    fanned_out_shard,
    succeeded,
    usage,
    write_shard_list,
)


def test_layout_matches_the_design(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "nightly", "scheduled__2026-11-23T18:00:00+00:00", "classify")
    root = tmp_path / "nightly" / "scheduled__2026-11-23T18:00:00+00:00" / "classify"
    assert folder.shard_requests(0, 3) == root / "round-0" / "shard-00003.requests.jsonl"
    assert folder.shard_state(1, 0) == root / "round-1" / "shard-00000.state.json"
    assert folder.shard_outcome(0, 12, "expired") == root / "round-0" / "shard-00012" / "expired.jsonl"
    assert folder.manifest == root / "manifest.json"
    assert folder.dead_letter == root / "dead-letter.jsonl"


@pytest.mark.parametrize("bad", ["..", "../etc", "a/b", "", "x\x00y", "a\\b", "run id", "a..b"])
def test_unsafe_segments_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="cannot be used in a storage path"):
        safe_segment(bad, "run_id")


def test_unknown_outcome_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        RunFolder(tmp_path).shard_outcome(0, 0, "../../escape")


def test_two_pipelines_of_one_run_never_share_a_folder(tmp_path: Path) -> None:
    run = ("eval_sweep", "manual__2026-12-01T00:00:00+00:00")
    first = RunFolder.for_run(tmp_path, *run, "sonnet_prompt_a")
    second = RunFolder.for_run(tmp_path, *run, "haiku_prompt_a")
    assert first.root != second.root
    assert first.shard_state(0, 0) != second.shard_state(0, 0)
    assert first.manifest != second.manifest
    assert first.storage_root == second.storage_root == tmp_path


def test_the_pipeline_id_is_a_checked_segment(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pipeline_id"):
        RunFolder.for_run(tmp_path, "dag", "run", "../other")


# -- every name of a run folder is spelled in core/run/layout.py only

PACKAGE = Path(__file__).resolve().parents[3] / "airflow_claude_batch"
LAYOUT = PACKAGE / "core" / "run" / "layout.py"


def _run_folder_names() -> set[str]:
    """Every file and folder name RunFolder gives, for round 0 and shard 0."""
    folder = RunFolder.for_run(Path("/storage"), "dag", "run", "pipeline")
    paths = [
        folder.round_dir(0),
        folder.shard_list(0),
        folder.requeue_record(0),
        folder.budget_held(0),
        folder.round_dead_letter(0),
        folder.shard_requests(0, 0),
        folder.shard_state(0, 0),
        folder.shard_dir(0, 0),
        folder.shard_marker(0, 0),
        folder.shard_sync_retry(0, 0),
        *(folder.shard_outcome(0, 0, outcome) for outcome in ROW_OUTCOMES),
        folder.dead_letter,
        folder.pending,
        folder.rejected,
        folder.manifest,
        folder.report,
        folder.cancel_record,
        folder.estimate,
        folder.input_fingerprint,
        folder.answered_earlier,
        folder.passthrough,
        folder.reused,
        claims_folder(folder.storage_root),
        claim_file(folder.storage_root, "msgbatch_1"),
    ]
    return {path.name for path in paths}


def _name_pattern(names: set[str]) -> re.Pattern[str]:
    """A run-folder name spelled in a text: a whole file name, or the numbered parts' prefixes and
    suffixes (``round-``, ``shard-``, ``.state.json``, ``.requests.jsonl``), or the claims folder."""
    whole = sorted(name for name in names if not re.search(r"\d", name) and name != "msgbatch_1.json")
    parts = [r"round-", r"shard-", r"\.state\.json", r"\.requests\.jsonl"]
    return re.compile(
        r"(?<![\w.-])(?:"
        + "|".join(map(re.escape, whole))
        + r")(?![\w-])|(?<![\w-])(?:"
        + "|".join(parts)
        + ")"
    )


#: A name in an RST literal (````estimate.json````) is documentation: an operator's help text.
_RST_LITERAL = re.compile(r"``[^`]*``")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _spelled_names(source: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """``(line, text)`` of every string literal (f-string parts too; docstrings and RST literals in help
    texts left out) naming a file of a run folder."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and pattern.search(_RST_LITERAL.sub("", node.value))
    ]


def test_the_names_cover_every_kind_of_file() -> None:
    names = _run_folder_names()
    assert {
        "manifest.json",
        "shards.json",
        "requeue.json",
        "sync_retry.jsonl",
        "_claims",
        "input.json",
    } <= names
    assert {"succeeded.jsonl", "refused.jsonl", "round-0", "shard-00000", "shard-00000.state.json"} <= names


def test_no_module_but_the_layout_spells_a_run_folder_name() -> None:
    pattern = _name_pattern(_run_folder_names())
    spelled = {
        f"{path.relative_to(PACKAGE.parent)}:{line}": text
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != LAYOUT and "emulator" not in path.parts
        for line, text in _spelled_names(path.read_text(encoding="utf-8"), pattern)
    }
    assert spelled == {}, "ask core/run/layout.py:RunFolder for these paths instead"


@pytest.mark.parametrize(
    "source",
    [
        'path = folder.root / "manifest.json"',
        'path = folder.round_dir(0) / "requeue.json"',
        'path = shard_dir / f"{outcome}.jsonl" if x else shard_dir / "sync_retry.jsonl"',
        'name = f"round-{r}"',
        'STATE = re.compile(r"^shard-(\\d{5})\\.state\\.json$")',
        'folder = root / "_claims"',
        'raise ValueError("restore input.json")',
    ],
)
def test_the_check_catches_a_name_spelled_outside_the_layout(source: str) -> None:
    assert _spelled_names(source, _name_pattern(_run_folder_names()))


def test_the_check_leaves_docstrings_help_texts_and_other_files_alone() -> None:
    source = (
        '"""Writes ``round-r/requeue.json``."""\n'
        "def f():\n"
        '    """Reads manifest.json."""\n'
        '    return "prices.json", "x.owner.json", "labels.pending.jsonl", "validate (``estimate.json``)"\n'
    )
    assert _spelled_names(source, _name_pattern(_run_folder_names())) == []


# -- a finished run folder holds RunFolder's names and nothing else


def _finished_run(folder: RunFolder) -> None:
    """A run written by the core's own writers: the build's files, two rounds (the first with a
    synchronous retry, the second held by the budget), the ledger, the report, a claim and a cancel."""
    write_json(folder.estimate, {"records": 6})
    write_passthrough(
        folder, [({"id": name, "title": name.upper()}, "t.jsonl:1") for name in "abcdef"], "id", ["title"]
    )
    write_fingerprint(folder, InputFingerprint(files=None, source_name="records", params_digest="0" * 64))
    write_answered_earlier(folder, 0, [])
    with atomic_writer(folder.rejected) as out:
        out.write(b'{"custom_id": "g", "location": "t.jsonl:7", "rule": "custom_id", "error": "bad"}\n')
    round_0 = [
        fanned_out_shard(
            folder, 0, [succeeded("a", "1"), errored("b"), errored("c", "invalid_request_error", "x")]
        ),
        fanned_out_shard(folder, 1, [expired("d"), succeeded("e", "2"), canceled("f")]),
    ]
    write_shard_list(folder, 0, round_0)
    for shard in round_0:
        write_state(folder.shard_state(0, shard.index), _submitted(shard, f"msgbatch_{shard.index}"))

    def send(params: Any) -> dict[str, Any]:
        return {"model": MODEL, "content": [{"type": "text", "text": "x"}], "usage": usage(10, 10)}

    requeue_round(folder, 0, round_0, sync=SyncRetry(send, PRICES))
    round_1 = read_shard_list(folder, 1) or []
    assert [shard.request_count for shard in round_1] == [2]
    write_state(folder.shard_state(1, 0), _submitted(round_1[0], "msgbatch_r1"))
    fan_out_shard(
        folder=folder,
        round_index=1,
        shard_index=0,
        requests_path=folder.shard_requests(1, 0),
        open_results=lambda: iter([errored("d"), errored("f")]),
        prices=PRICES,
    )
    broke = RoundBudget(
        max_cost_usd=0.0, basis="expected", spent_usd=0.0, per_request_usd=1.0, per_sync_request_usd=1.0
    )
    requeue_round(folder, 1, round_1, budget=broke)
    manifest, samples = write_ledger(folder, prices=PRICES, max_rounds=3)
    write_report(folder.report, manifest, samples)
    ClaimsIndex(folder.storage_root).write(Claim("msgbatch_0", str(folder.shard_state(0, 0)), None, "t"))
    write_cancel(folder)


def _submitted(shard: ShardDescriptor, batch_id: str) -> SubmitState:
    return SubmitState(
        shard_uri=shard.uri,
        fingerprint="0" * 64,
        request_count=shard.request_count,
        body_bytes=shard.body_bytes,
        intent_at="2026-01-01T00:00:00.000000Z",
        status="submitted",
        batch_id=batch_id,
    )


def test_a_finished_run_folder_holds_the_layouts_files_and_no_other(tmp_path: Path) -> None:
    folder = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    _finished_run(folder)
    found = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    shard_files = [
        *(folder.shard_outcome(0, 0, outcome) for outcome in ROW_OUTCOMES),
        folder.shard_sync_retry(0, 0),
        *(folder.shard_outcome(0, 1, outcome) for outcome in ROW_OUTCOMES),
        *(folder.shard_outcome(1, 0, outcome) for outcome in ROW_OUTCOMES),
    ]
    given = [
        folder.estimate,
        folder.passthrough,
        folder.input_fingerprint,
        folder.answered_earlier,
        folder.rejected,
        folder.manifest,
        folder.report,
        folder.dead_letter,
        folder.pending,
        folder.cancel_record,
        *(folder.shard_list(r) for r in (0, 1, 2)),  # round 2's is empty: the budget held its requests
        folder.requeue_record(0),
        folder.requeue_record(1),
        folder.round_dead_letter(0),
        folder.round_dead_letter(1),
        folder.budget_held(0),
        folder.budget_held(1),
        *(folder.shard_requests(r, s) for r, s in ((0, 0), (0, 1), (1, 0))),
        *(folder.shard_state(r, s) for r, s in ((0, 0), (0, 1), (1, 0))),
        *shard_files,
        claim_file(folder.storage_root, "msgbatch_0"),
    ]
    expected = sorted(str(Path(str(path)).relative_to(tmp_path)) for path in given)
    assert (set(found) - set(expected), set(expected) - set(found)) == (set(), set())
    assert found == expected
    # the layout on storage, byte for byte (a renamed file would strand every run written before it)
    assert "dag/run_1/claude_batch/round-0/shard-00000/sync_retry.jsonl" in found
    assert "dag/run_1/claude_batch/round-1/budget-held.jsonl" in found
    assert "_claims/msgbatch_0.json" in found
    assert {name.rsplit("/", 1)[-1] for name in found} == {
        "estimate.json",
        "passthrough.jsonl",
        "input.json",
        "answered-earlier.json",
        "rejected.jsonl",
        "manifest.json",
        "report.html",
        "dead-letter.jsonl",
        "pending.jsonl",
        "cancel.json",
        "shards.json",
        "requeue.json",
        "budget-held.jsonl",
        "shard-00000.requests.jsonl",
        "shard-00001.requests.jsonl",
        "shard-00000.state.json",
        "shard-00001.state.json",
        *(f"{outcome}.jsonl" for outcome in ROW_OUTCOMES),
        "sync_retry.jsonl",
        "msgbatch_0.json",
    }
    assert folder.round_indexes() == [0, 1, 2]
    assert folder.state_file_shards(0) == [0, 1]
    assert folder.shard_dirs(0) == [0, 1]
