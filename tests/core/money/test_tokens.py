"""Token totals: the five token counts of a usage, added up and stored."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_claude_batch.core.money.tokens import TokenTotals


def test_token_totals_add_up_and_round_trip() -> None:
    a = TokenTotals(input=1, output=2, cache_write_5m=3, cache_write_1h=4, cache_read=5)
    b = TokenTotals(input=10, output=20, cache_write_5m=30, cache_write_1h=40, cache_read=50)
    assert a + b == TokenTotals(11, 22, 33, 44, 55)
    assert (a + b).total_input == 11 + 33 + 44 + 55
    assert TokenTotals.from_dict((a + b).to_dict()) == a + b
    assert a.to_dict() == {"input": 1, "output": 2, "cache_write_5m": 3, "cache_write_1h": 4, "cache_read": 5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.input = 7  # type: ignore[misc]
