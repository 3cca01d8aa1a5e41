"""A value that satisfies a JSON schema, derived deterministically from a seed text.

Used for forced tool calls (``input`` from the tool's ``input_schema``) and structured outputs
(``output_config.format``). The same schema and seed always give the same value; another seed (another
prompt) gives another one. ``hint`` carries what the emulator's own answer would say (a classifier's
label, a moderator's verdict): a property named in it takes the hinted value when that value fits.

Covered: ``type`` (one or a list), ``enum``, ``const``, ``anyOf``/``oneOf`` (the first branch),
``allOf`` (merged), local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), ``properties``,
``required``, ``items``/``prefixItems``, ``minItems``/``maxItems``, ``minLength``/``maxLength``,
``minimum``/``maximum`` (and exclusive), ``multipleOf`` on integers, and the common ``format``s.
Not covered: ``pattern`` (strings are plain words), ``not``, ``if``/``then``, ``dependentSchemas``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

_WORDS = ("alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "sierra", "tango", "zulu")
_FORMATS = {
    "date": "2026-01-{day:02d}",
    "date-time": "2026-01-{day:02d}T12:00:00Z",
    "time": "12:{day:02d}:00Z",
    "email": "user{day}@example.com",
    "uri": "https://example.com/item/{day}",
    "uuid": "00000000-0000-4000-8000-0000000000{day:02d}",
    "hostname": "host{day}.example.com",
    "ipv4": "192.0.2.{day}",
}
_MAX_DEPTH = 12


def _number(seed: str) -> int:
    return int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big")


def value_for_schema(schema: Any, seed: str, hint: Mapping[str, Any] | None = None) -> Any:
    """Return a value valid against ``schema``, the same whenever ``schema`` and ``seed`` are.

    :param schema: a JSON schema (a dict, or ``True``/``False``).
    :param seed: text the value depends on (the prompt).
    :param hint: values to prefer for properties of these names, when they fit.
    """
    root = schema if isinstance(schema, Mapping) else {}
    return _value(schema, seed, hint or {}, root, 0, None)


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            if not part:
                continue
            target = (
                target.get(part.replace("~1", "/").replace("~0", "~"))
                if isinstance(target, Mapping)
                else None
            )
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **(target or {})}
        seen += 1
    return schema


def _merged(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    parts = schema.get("allOf")
    if not isinstance(parts, list):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        part = _resolve(part, root)
        if isinstance(part, Mapping):
            for key, value in part.items():
                if key == "properties" and isinstance(value, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
    return merged


def _fits(value: Any, schema: Any, root: Mapping[str, Any]) -> bool:
    from jsonschema.validators import validator_for

    if not isinstance(schema, Mapping):
        return schema is not False
    # only the root's definitions, for $ref: its own keywords (type, required) are not the property's
    definitions = {key: root[key] for key in ("$defs", "definitions") if root and key in root}
    full = {**definitions, **schema}
    try:
        return validator_for(full)(full).is_valid(value)
    except Exception:  # an unresolvable schema: do not use the hint
        return False


def _value(
    schema: Any, seed: str, hint: Mapping[str, Any], root: Mapping[str, Any], depth: int, name: str | None
) -> Any:
    if schema is True or schema is None:
        schema = {}
    if schema is False or not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    schema = _merged(_resolve(schema, root), root)
    if name is not None and name in hint and _fits(hint[name], schema, root):
        return hint[name]
    if "const" in schema:
        return schema["const"]
    number = _number(seed)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][number % len(schema["enum"])]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            rest = {k: v for k, v in schema.items() if k != key}
            return _value({**rest, **_resolve(schema[key][0], root)}, seed, hint, root, depth + 1, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [item for item in kind if item != "null"] or ["null"]
        kind = kinds[0]
    if kind is None:
        kind = _implied_type(schema)
    return _typed(kind, schema, seed, number, hint, root, depth)


def _implied_type(schema: Mapping[str, Any]) -> str:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema:
        return "number"
    return "string"


def _typed(
    kind: str,
    schema: Mapping[str, Any],
    seed: str,
    number: int,
    hint: Mapping[str, Any],
    root: Mapping[str, Any],
    depth: int,
) -> Any:
    if kind == "object":
        return _object(schema, seed, hint, root, depth)
    if kind == "array":
        return _array(schema, seed, hint, root, depth)
    if kind == "integer":
        return _integer(schema, number)
    if kind == "number":
        return _float(schema, number)
    if kind == "boolean":
        return number % 2 == 0
    if kind == "null":
        return None
    return _string(schema, number)


def _object(
    schema: Mapping[str, Any], seed: str, hint: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    required = [key for key in schema.get("required") or [] if isinstance(key, str)]
    names = list(properties) + [key for key in required if key not in properties]
    result = {}
    for key in names:
        result[key] = _value(properties.get(key, {}), f"{seed}/{key}", hint, root, depth + 1, key)
    minimum = schema.get("minProperties")
    extra = schema.get("additionalProperties")
    index = 0
    while isinstance(minimum, int) and len(result) < minimum and extra is not False:
        result[f"key{index}"] = _value(
            extra if isinstance(extra, Mapping) else {}, f"{seed}/{index}", hint, root, depth + 1, None
        )
        index += 1
    return result


def _array(
    schema: Mapping[str, Any], seed: str, hint: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> list[Any]:
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items", {})
    low = schema.get("minItems", 1) if isinstance(schema.get("minItems", 1), int) else 1
    high = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
    count = max(low, len(prefix), 1)
    if high is not None:
        count = min(count, high)
    values = []
    for index in range(count):
        item_schema = prefix[index] if index < len(prefix) else items
        values.append(_value(item_schema, f"{seed}[{index}]", hint, root, depth + 1, None))
    if schema.get("uniqueItems") and len({repr(value) for value in values}) < len(values):
        values = values[:1]
    return values


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, float | None]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    exclusive_low = schema.get("exclusiveMinimum")
    exclusive_high = schema.get("exclusiveMaximum")
    if isinstance(exclusive_low, (int, float)) and not isinstance(exclusive_low, bool):
        low = exclusive_low if low is None else max(low, exclusive_low)
    if isinstance(exclusive_high, (int, float)) and not isinstance(exclusive_high, bool):
        high = exclusive_high if high is None else min(high, exclusive_high)
    return low, high


def _integer(schema: Mapping[str, Any], number: int) -> int:
    low, high = _bounds(schema)
    start = math.floor(low) + 1 if low is not None else 0
    end = math.ceil(high) - 1 if high is not None else start + 100
    if low is not None and schema.get("exclusiveMinimum") is None and float(low).is_integer():
        start = int(low)
    if high is not None and schema.get("exclusiveMaximum") is None and float(high).is_integer():
        end = int(high)
    end = max(end, start)
    value = start + number % (end - start + 1)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        value = max(start + (-start) % step, value - value % step)
    return value


def _float(schema: Mapping[str, Any], number: int) -> float:
    low, high = _bounds(schema)
    if low is None and high is None:
        low, high = 0.0, 1.0
    elif low is None:
        low = float(high) - 1.0  # type: ignore[arg-type]
    elif high is None:
        high = float(low) + 1.0
    fraction = 0.05 + (number % 90) / 100  # strictly inside, so exclusive bounds hold too
    return round(float(low) + (float(high) - float(low)) * fraction, 4)  # type: ignore[arg-type]


def _string(schema: Mapping[str, Any], number: int) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt].format(day=1 + number % 28)
    low = schema.get("minLength", 0) if isinstance(schema.get("minLength", 0), int) else 0
    high = schema.get("maxLength") if isinstance(schema.get("maxLength"), int) else None
    text = f"{_WORDS[number % len(_WORDS)]} {_WORDS[(number // 10) % len(_WORDS)]}"
    while len(text) < low:
        text += f" {_WORDS[len(text) % len(_WORDS)]}"
    if high is not None:
        text = text[:high]
    return text
