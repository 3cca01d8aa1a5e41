"""A shard's request lines and their custom_ids."""

from __future__ import annotations

import pytest

from airflow_claude_batch.core.requests.request_lines import custom_id_of_line
from airflow_claude_batch.exceptions import InputError


def test_custom_id_is_read_from_the_line_start_or_parsed_when_keys_are_reordered() -> None:
    assert custom_id_of_line(b'{"custom_id":"ab-1_2","params":{"model":"m"}}\n') == "ab-1_2"
    assert custom_id_of_line(b'{"params":{"custom_id":"inner"},"custom_id":"outer"}') == "outer"
    with pytest.raises(InputError, match="no custom_id"):
        custom_id_of_line(b'{"params":{}}')
