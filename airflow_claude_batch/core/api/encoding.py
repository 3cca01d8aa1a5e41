"""The JSON encoding of batch requests, byte for byte as the anthropic SDK sends a create body.

The SDK encodes request bodies with ``json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
allow_nan=False)`` and UTF-8 (``anthropic/_utils/_json.py``). Shard files hold one request per line in
that encoding, and the submit step sends the lines verbatim inside ``{"requests":[...]}``, so the size
measured here is the size sent: ``limits.batch_body_size(sum of line sizes, count)``.

orjson is used where its output is identical (proved by property tests against the SDK's encoder):
plain dicts with string keys, lists, tuples, strings, 64-bit integers, booleans, ``None`` and floats
that Python writes without an exponent below 1e-4. Anything else goes through the SDK's settings in the
standard library. Only plain JSON values are accepted: the SDK would also turn dates, pydantic models
and iterators into JSON, but a shard file must be plain JSON that reads back as it was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from airflow_claude_batch.exceptions import InputError

#: The anthropic SDK's JSON settings for request bodies.
SDK_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# orjson writes 1e-05 as 0.00001 where Python writes 1e-05; at and above 1e-4 both write the same.
_SMALLEST_SAME_FLOAT = 1e-4
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def sdk_json_bytes(value: Any) -> bytes:
    """Encode ``value`` with the SDK's settings through the standard library (the reference encoding).

    :raises ValueError: NaN or infinity, or a circular reference.
    :raises TypeError: a value that is not plain JSON.
    :raises UnicodeEncodeError: a lone surrogate in a string.
    """
    return SDK_JSON_ENCODER.encode(value).encode("utf-8")


def encode_json(value: Any, *, location: str | None = None) -> bytes:
    """Return ``value`` as JSON bytes identical to what the anthropic SDK sends for it.

    :param value: plain JSON data (a request ``{"custom_id", "params"}``, or any part of one).
    :param location: the record the value came from, for the error message.
    :raises InputError: the value cannot be sent as JSON; the message says why.
    """
    try:
        encoded = orjson.dumps(value, default=_not_plain, option=_PASSTHROUGH)
    except (orjson.JSONEncodeError, TypeError):
        encoded = None
    if encoded is not None and _orjson_matches_sdk(value):
        return encoded
    try:
        return sdk_json_bytes(value)
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise InputError(_encoding_problem(exc), location=location) from None


def encode_text(text: str, *, location: str | None = None) -> bytes:
    """Return one string as a JSON string literal, as the SDK encodes it (the fast path of templates).

    :raises InputError: the text holds a lone surrogate, which UTF-8 cannot carry.
    """
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError:
        raise InputError(
            "the text holds a lone UTF-16 surrogate, which is not valid Unicode; fix the text's encoding",
            location=location,
        ) from None


def _not_plain(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _orjson_matches_sdk(value: Any) -> bool:
    # Called only after orjson encoded the value, so it is finite in depth and free of cycles.
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is float:
            # orjson writes NaN and infinity as null, which the SDK refuses: they take the slow path too.
            if not (item == 0.0 or _SMALLEST_SAME_FLOAT <= abs(item) < math.inf):
                return False
        else:
            return False
    return True


def _encoding_problem(exc: BaseException) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return "a string holds a lone UTF-16 surrogate, which is not valid Unicode; fix the text's encoding"
    if isinstance(exc, RecursionError):
        return "the params are nested too deeply to encode; flatten them"
    if isinstance(exc, TypeError):
        return (
            f"the params hold a value that is not plain JSON ({exc}); return only dicts, lists, strings, "
            "numbers, booleans and None (for a pydantic model, use model.model_dump(mode='json'))"
        )
    return f"the params cannot be encoded as JSON ({exc}); use finite numbers and no circular references"


def decode_request(line: bytes) -> Mapping[str, Any]:
    """Read one shard line back (for samples and for requeues)."""
    return orjson.loads(line)
