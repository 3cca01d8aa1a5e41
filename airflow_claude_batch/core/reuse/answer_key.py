"""A request's answer key: the digest of what the API answers to, never of the record's id.

The key is the sha256 of the request's ``params`` (the model, the messages, the system prompt, the
schema, the tools, ``max_tokens``, temperature... every param after the build's own additions),
encoded canonically: keys sorted, no whitespace, UTF-8 (``orjson`` with ``OPT_SORT_KEYS``). The
``custom_id`` is left out, so one answer serves every record that asks the same thing; another model,
prompt or param is another key, and a record whose text changed under the same id is a new key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from airflow_claude_batch.exceptions import InputError

#: Bumped when the encoding changes, so old keys can never match new requests.
KEY_VERSION = b"answer-key-1\n"
_SORTED = orjson.OPT_SORT_KEYS


def answer_key(params: Mapping[str, Any]) -> str:
    """Return the key of a request's ``params`` (64 hex digits)."""
    return hashlib.sha256(KEY_VERSION + orjson.dumps(params, option=_SORTED)).hexdigest()


def line_key(line: bytes) -> tuple[str, str]:
    """Return ``(custom_id, key)`` of a request line (``{"custom_id", "params"}``, as a shard holds it).

    :raises InputError: the line is not a request.
    """
    try:
        request = orjson.loads(line)
        return str(request["custom_id"]), answer_key(request["params"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"not a request line ({exc}): {line[:80]!r}") from exc
