"""Every record accounted, every time: shards added to a requeued round, a canceled run, unknown outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.core.report.ledger import accounting_failure, write_ledger
from airflow_claude_batch.core.requeue.requeue import requeue_round
from airflow_claude_batch.core.requeue.requeue_record import read_requeue_record
from airflow_claude_batch.core.requeue.sync_retry import SyncRequestError, SyncRetry
from airflow_claude_batch.core.run.cancel_record import is_canceled, read_cancel, remove_cancel, write_cancel
from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.round_files import read_shard_list
from airflow_claude_batch.core.run.storage import write_json
from airflow_claude_batch.exceptions import StorageError
from tests.core.batch_results import (
    MODEL,
    PRICES,
    canceled,
    errored,
    expired,
    fanned_out_shard,
    read_rows,
    succeeded,
    write_shard,
    write_shard_list,
)


def ids_of(folder: RunFolder, round_index: int, shard_index: int) -> list[str]:
    return [row["custom_id"] for row in read_rows(folder.shard_requests(round_index, shard_index))]


def pending(folder: RunFolder) -> dict[str, dict[str, Any]]:
    return {row["custom_id"]: row for row in read_rows(folder.pending)}


def never_sent(params: Mapping[str, Any]) -> Mapping[str, Any]:
    raise AssertionError("no synchronous call may be sent")


# --- shards added to a finished round get that round's requeue -----------------------------------------


def test_a_shard_added_to_a_requeued_round_gets_the_rounds_requeue(folder: RunFolder) -> None:
    first = fanned_out_shard(folder, 0, [succeeded("a"), expired("b"), errored("c", "invalid_request_error")])
    write_shard_list(folder, 0, [first])
    before = requeue_round(folder, 0, [first])
    assert (before.requeued, before.dead_lettered, before.shards_read) == (1, 1, [0])
    round_1_shard_0 = folder.shard_requests(1, 0).read_bytes()

    # late data, add_new: a second shard joins round 0 and its batch expires in part
    added = fanned_out_shard(
        folder,
        1,
        [succeeded("d"), expired("e"), errored("f", "overloaded_error"), errored("g", "billing_error")],
    )
    write_shard_list(folder, 0, [first, added])
    after = requeue_round(folder, 0, [first, added])

    assert (after.requeued, after.dead_lettered, after.shards_read) == (3, 2, [0, 1])
    assert [shard["index"] for shard in after.next_shards] == [0, 1]
    assert after.next_shards[0] == before.next_shards[0]  # a shard that may have been submitted never changes
    assert folder.shard_requests(1, 0).read_bytes() == round_1_shard_0
    assert ids_of(folder, 1, 1) == ["e", "f"]
    assert [s.index for s in read_shard_list(folder, 1) or []] == [0, 1]
    assert [row["custom_id"] for row in read_rows(folder.round_dead_letter(0))] == ["c", "g"]
    assert requeue_round(folder, 0, [first, added]) == after  # a rerun changes nothing more

    fanned_out_shard(folder, 0, [succeeded("b")], round_index=1)
    fanned_out_shard(folder, 1, [succeeded("e"), succeeded("f")], round_index=1)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert manifest.dispositions == {
        "succeeded": 5,
        "invalid_output": 0,
        "dead_lettered": 2,
        "pending": 0,
        "refused": 0,
        "rejected": 0,
    }
    assert manifest.reconciled, manifest.notes
    assert accounting_failure(manifest) is None


def test_an_added_shard_goes_on_through_every_round_already_requeued(folder: RunFolder) -> None:
    first = fanned_out_shard(folder, 0, [expired("a")])
    write_shard_list(folder, 0, [first])
    requeue_round(folder, 0, [first])
    round_1 = fanned_out_shard(folder, 0, [succeeded("a")], round_index=1)
    assert requeue_round(folder, 1, [round_1]).next_shards == []

    added = fanned_out_shard(folder, 1, [expired("b")])
    write_shard_list(folder, 0, [first, added])
    [kept, new] = [s for s in requeue_round(folder, 0, [first, added]).next_shards]
    assert (kept["index"], new["index"], ids_of(folder, 1, 1)) == (0, 1, ["b"])
    round_1_added = fanned_out_shard(folder, 1, [expired("b")], round_index=1)  # expired again
    record = requeue_round(folder, 1, [round_1, round_1_added])

    assert (record.requeued, record.shards_read) == (1, [0, 1])
    assert ids_of(folder, 2, 0) == ["b"]
    fanned_out_shard(folder, 0, [succeeded("b")], round_index=2)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)
    assert manifest.dispositions["succeeded"] == 2
    assert manifest.reconciled, manifest.notes


def test_a_requeue_cut_short_while_adding_a_shard_adds_it_once(folder: RunFolder) -> None:
    first = fanned_out_shard(folder, 0, [expired("a"), errored("b", "invalid_request_error")])
    requeue_round(folder, 0, [first])
    added = fanned_out_shard(folder, 1, [expired("c"), errored("d", "invalid_request_error")])
    # an earlier try of the added part wrote the round's files, then died before its record
    requeue_round(folder, 0, [first, added])
    record_path = folder.round_dir(0) / "requeue.json"
    done = read_requeue_record(folder, 0)
    assert done is not None
    earlier = {"requeued": 1, "dead_lettered": 1, "shards_read": [0], "next_shards": done.next_shards[:1]}
    write_json(record_path, {**done.to_dict(), **earlier})

    again = requeue_round(folder, 0, [first, added])

    assert (again.requeued, again.dead_lettered) == (2, 2)
    assert [row["custom_id"] for row in read_rows(folder.round_dead_letter(0))] == ["b", "d"]
    assert [s.index for s in read_shard_list(folder, 1) or []] == [0, 1]


def test_a_schema_1_record_is_returned_as_it_was(folder: RunFolder) -> None:
    first = fanned_out_shard(folder, 0, [expired("a")])
    record = requeue_round(folder, 0, [first])
    old = {k: v for k, v in record.to_dict().items() if k not in ("shards_read", "canceled_shards")}
    write_json(folder.round_dir(0) / "requeue.json", {**old, "schema_version": 1})
    added = fanned_out_shard(folder, 1, [expired("b")])
    assert requeue_round(folder, 0, [first, added]).requeued == 1


# --- a canceled run sends nothing more ----------------------------------------------------------------


def test_the_cancel_record_is_whole_and_a_resume_removes_it(folder: RunFolder) -> None:
    assert not is_canceled(folder)
    record = write_cancel(folder)
    assert read_cancel(folder) == record
    assert write_cancel(folder) == record  # a second cancel keeps the first's time
    assert remove_cancel(folder) is True
    assert not is_canceled(folder)
    assert remove_cancel(folder) is False
    folder.cancel_record.write_text("[]")
    with pytest.raises(StorageError, match="--resume"):
        is_canceled(folder)


def test_after_a_cancel_the_requeue_builds_no_round_and_sends_no_synchronous_retry(folder: RunFolder) -> None:
    stamp = "2026-12-07T22:00:00Z"
    shard = fanned_out_shard(
        folder,
        0,
        [succeeded("a"), errored("b"), canceled("c"), expired("d"), errored("e", "invalid_request_error")],
        cancel_initiated_at=stamp,
    )
    write_shard_list(folder, 0, [shard])
    write_cancel(folder)

    record = requeue_round(folder, 0, [shard], sync=SyncRetry(never_sent, PRICES))

    assert (record.requeued, record.held, record.dead_lettered, record.next_shards) == (0, 3, 1, [])
    assert record.canceled_shards == [0]
    assert not folder.shard_sync_retry(0, 0).exists()
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)
    rows = pending(folder)
    assert {custom_id: row["reason"] for custom_id, row in rows.items()} == dict.fromkeys("bcd", "canceled")
    assert manifest.dispositions == {
        "succeeded": 1,
        "invalid_output": 0,
        "dead_lettered": 1,
        "pending": 3,
        "refused": 0,
        "rejected": 0,
    }
    assert manifest.reconciled, manifest.notes
    assert manifest.canceled is not None


def test_a_canceled_runs_last_round_and_unsubmitted_shards_are_pending_as_canceled(folder: RunFolder) -> None:
    done = fanned_out_shard(folder, 0, [succeeded("a"), errored("b")])
    waiting = write_shard(folder, 0, 1, ["c", "d"])  # paced after a 429: no batch when the cancel came
    write_shard_list(folder, 0, [done, waiting])
    write_cancel(folder)

    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)

    rows = pending(folder)
    assert {custom_id: row["reason"] for custom_id, row in rows.items()} == dict.fromkeys("bcd", "canceled")
    assert rows["c"]["last_outcome"] == "not_submitted"
    assert manifest.dispositions["pending"] == 3
    assert manifest.reconciled, manifest.notes


def test_a_round_requeued_before_the_cancel_keeps_its_decisions(folder: RunFolder) -> None:
    first = fanned_out_shard(folder, 0, [expired("a")])
    requeue_round(folder, 0, [first])
    write_cancel(folder)
    added = fanned_out_shard(folder, 1, [expired("b")])
    write_shard_list(folder, 0, [first, added])
    record = requeue_round(folder, 0, [first, added])
    assert (record.requeued, record.held, record.canceled_shards) == (1, 1, [1])
    fanned_out_shard(folder, 0, [succeeded("a")], round_index=1)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=2)
    assert {row["custom_id"]: row["reason"] for row in read_rows(folder.pending)} == {"b": "canceled"}
    assert manifest.reconciled, manifest.notes


# --- a synchronous retry of unknown outcome is possibly billed, never resent ---------------------------


def timed_out(params: Mapping[str, Any]) -> Mapping[str, Any]:
    raise SyncRequestError(
        "timeout_error",
        "the synchronous call timed out after sending",
        endpoint_fault=True,
        outcome_unknown=True,
    )


# --- a report whose dispositions do not add up fails ---------------------------------------------------


def test_dispositions_that_do_not_add_up_are_a_failure(folder: RunFolder) -> None:
    shard = fanned_out_shard(folder, 0, [succeeded("a"), expired("b")])
    write_shard_list(folder, 0, [shard])
    write_json(folder.estimate, {"records": 3})
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=1)
    failure = accounting_failure(manifest)
    assert failure is not None
    assert (failure["accounted"], failure["input_records"]) == (2, 3)
    assert "not accounted for" in failure["reason"]
    assert shard.request_count == 2


# --- a re-sweep never re-sends what a synchronous retry answered ---------------------------------------


def test_add_new_counts_the_synchronous_retrys_answers_as_answered(tmp_path: Path) -> None:
    from airflow_claude_batch.core.build.input_change import known_ids
    from airflow_claude_batch.core.build.input_fingerprint import InputFingerprint, write_fingerprint

    now = InputFingerprint(files=None, source_name="tickets", params_digest="d", data_interval=("a", "b"))
    earlier = RunFolder.for_run(tmp_path, "dag", "run_1", "claude_batch")
    shard = fanned_out_shard(earlier, 0, [succeeded("a"), errored("b"), errored("c")])
    write_shard_list(earlier, 0, [shard])
    write_fingerprint(earlier, now)
    answers = {"b": {"model": MODEL, "content": [{"type": "text", "text": "ok"}], "usage": {}}}

    def send(params: Mapping[str, Any]) -> Mapping[str, Any]:
        if params["messages"][0]["content"] != "hello":
            raise AssertionError(params)
        answer = answers.pop("b", None)
        if answer is None:
            raise SyncRequestError("overloaded_error", "busy")
        return {"id": "msg_b", "type": "message", "role": "assistant", "stop_reason": "end_turn", **answer}

    requeue_round(earlier, 0, [shard], sync=SyncRetry(send, PRICES, concurrency=1))
    assert [row["outcome"] for row in read_rows(earlier.shard_sync_retry(0, 0))] == ["succeeded", "errored"]

    later = RunFolder.for_run(tmp_path, "dag", "run_2", "claude_batch")
    known = known_ids(later, [], now)

    assert known.answered == {"a", "b"}  # c is still unanswered: the re-sweep sends it
    assert known.runs == [str(earlier.root)]


def test_a_cancel_during_the_synchronous_retries_stops_the_next_shards_calls(folder: RunFolder) -> None:
    shards = [
        fanned_out_shard(folder, 0, [errored("a"), expired("b")]),
        fanned_out_shard(folder, 1, [errored("c"), errored("d")]),
    ]
    write_shard_list(folder, 0, shards)
    sent: list[str] = []

    def answer_then_cancel(params: Mapping[str, Any]) -> Mapping[str, Any]:
        sent.append(params["messages"][0]["content"])
        write_cancel(folder)  # the user cancels while the first call is in flight
        return {
            "id": "msg_a",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 2},
        }

    record = requeue_round(folder, 0, shards, sync=SyncRetry(answer_then_cancel, PRICES, concurrency=1))

    assert len(sent) == 1  # shard 1's two calls were never sent
    assert (record.sync_succeeded, record.budget_held) == (1, 2)
    manifest, _ = write_ledger(folder, prices=PRICES, max_rounds=3)
    rows = pending(folder)
    assert {custom_id: row["reason"] for custom_id, row in rows.items()} == dict.fromkeys("bcd", "canceled")
    assert manifest.reconciled, manifest.notes
