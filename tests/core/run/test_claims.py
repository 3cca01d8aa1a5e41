"""The claims index: a batch is claimed once, by one owner, and a damaged claim is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_claude_batch.core.run.claims import Claim, ClaimsIndex
from airflow_claude_batch.exceptions import InputError, StorageError


def test_claims_round_trip_and_name_their_owner(tmp_path: Path) -> None:
    claims = ClaimsIndex(tmp_path)
    assert claims.read("msgbatch_1") is None
    claim = Claim("msgbatch_1", "s3://root/d/r/p/round-0/shard-00000.state.json", "acb-marker-x", "t")
    claims.write(claim)
    assert claims.read("msgbatch_1") == claim
    assert (tmp_path / "_claims" / "msgbatch_1.json").is_file()


def test_a_damaged_claim_is_an_error_and_a_batch_id_cannot_leave_the_index(tmp_path: Path) -> None:
    claims = ClaimsIndex(tmp_path)
    (tmp_path / "_claims").mkdir()
    (tmp_path / "_claims" / "msgbatch_2.json").write_text('{"schema_version": 1}')
    with pytest.raises(StorageError, match="not a valid claim"):
        claims.read("msgbatch_2")
    with pytest.raises(InputError, match="cannot be used in a storage path"):
        claims.read("../escape")


def test_a_claim_is_created_once_and_kept_for_the_same_owner(tmp_path: Path) -> None:
    claims = ClaimsIndex(tmp_path)
    claims.write(Claim("msgbatch_1", "owner-a", "acb-marker-a", "t"))
    claims.write(Claim("msgbatch_1", "owner-a", "acb-marker-a", "t2"))  # a retry after a crash
    with pytest.raises(StorageError, match="already claimed by owner-a"):
        claims.write(Claim("msgbatch_1", "owner-b", "acb-marker-b", "t"))
    claim = claims.read("msgbatch_1")
    assert claim is not None
    assert claim.owner == "owner-a"
