"""The API's answer headers and timestamps: ``retry-after`` in its three spellings, RFC 3339 times."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_claude_batch.core.api.headers import parse_retry_after, parse_timestamp


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        (None, None),
        ({"Retry-After": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Fri, 15 Jan 2027 08:00:30 GMT"}, 30.0),
        ({"retry-after": "Fri, 15 Jan 2027 07:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
    ],
)
def test_parse_retry_after(headers: dict | None, expected: float | None) -> None:
    now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(headers, now=now) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00Z", datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()),
        ("2027-01-15T09:00:00+01:00", datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()),
        (
            "2027-01-15T08:00:00.123456789Z",
            datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp() + 0.123456,
        ),
        ("2027-01-15T08:00:00", datetime(2027, 1, 15, 8, tzinfo=timezone.utc).timestamp()),
        ("not a date", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_timestamp(text, expected: float | None) -> None:
    assert parse_timestamp(text) == (pytest.approx(expected) if expected is not None else None)
