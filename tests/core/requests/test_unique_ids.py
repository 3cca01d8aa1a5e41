from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_claude_batch.core.requests.unique_ids import DigestSet, id_digest


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2**64 - 1), max_size=300))
def test_the_digest_set_behaves_as_a_set(digests: list[int]) -> None:
    table, reference = DigestSet(slots_log2=2), set()
    for digest in digests:
        assert table.add(digest) == (digest not in reference)
        reference.add(digest)
    assert len(table) == len(reference)


def test_the_digest_set_takes_eight_bytes_a_slot() -> None:
    table = DigestSet()
    for n in range(1, 100_001):
        table.add(id_digest(f"id-{n}"))
    assert len(table) == 100_000
    slots = len(table._table)
    assert table._table.itemsize == 8
    assert slots <= 2 * 100_000 / 0.6, "the table must stay within a factor of two of its load limit"
