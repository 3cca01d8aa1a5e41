"""The API's answer headers and timestamps, read apart from what a caller decides with them.

``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date) on a refused or failed call, and the RFC
3339 times of a batch (``created_at``, ``expires_at``). Used by the wait's decisions, the submit's
pacing, the hook's read retries and the requeue's synchronous retries.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any


def parse_timestamp(value: Any) -> float | None:
    """Return epoch seconds from an RFC 3339 string (``...Z`` or with an offset), or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python 3.10's fromisoformat takes at most 6 fractional digits; the API may send more.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float) -> float | None:
    """Return the seconds to wait that the response asked for, or ``None``.

    Reads ``retry-after-ms`` first (milliseconds), then ``retry-after`` (seconds or an HTTP date).
    """
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _as_float(lowered.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000.0
    raw = lowered.get("retry-after")
    seconds = _as_float(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    if raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(when.timestamp() - now, 0.0)
    return None


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
