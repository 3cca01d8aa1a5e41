"""Marker ids name one create attempt of one shard; records may not take the marker's prefix."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.api.limits import CUSTOM_ID_PATTERN
from airflow_claude_batch.core.requests.marker import MarkerWatch, is_marker, marker_id
from airflow_claude_batch.exceptions import AfterSubmitError


def test_a_marker_id_is_a_valid_custom_id_that_changes_with_every_part_of_its_identity() -> None:
    base = ("s3://root/dag/run/pipe/round-0/shard-00000.requests.jsonl", "a" * 64, "intent-1")
    ids = {
        marker_id(*base),
        marker_id(base[0].replace("run", "run2"), base[1], base[2]),
        marker_id(base[0].replace("pipe", "pipe2"), base[1], base[2]),
        marker_id(base[0], "b" * 64, base[2]),
        marker_id(base[0], base[1], "intent-2"),
    }
    assert len(ids) == 5
    assert all(CUSTOM_ID_PATTERN.fullmatch(value) and is_marker(value) for value in ids)
    assert marker_id(*base) == marker_id(*base)


def test_the_watch_takes_only_its_marker_and_fails_a_batch_without_it() -> None:
    watch = MarkerWatch("acb-marker-1")
    assert not watch.take({"custom_id": "acb-marker-2"})
    assert not watch.take({"custom_id": "r1"})
    with pytest.raises(AfterSubmitError, match="do not hold the shard's marker request acb-marker-1"):
        watch.check("batch b")
    assert watch.take({"custom_id": "acb-marker-1", "result": {"type": "succeeded"}})
    watch.check("batch b")
    MarkerWatch(None).check("a batch made without a marker")
