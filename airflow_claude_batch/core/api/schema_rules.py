"""The structured-outputs schema subset: what ``output_config.format.schema`` may hold.

Part of the one rule set (see :mod:`airflow_claude_batch.core.api.request_rules`). The subset is the one
the structured-outputs page lists under "JSON Schema limitations" and that the anthropic SDK's
``transform_schema`` produces (``anthropic/lib/_parse/_transform.py``): every object has
``additionalProperties: false``; numeric, length and array-size constraints (``minimum``,
``maxLength``, ``minItems`` above 1...), unknown string formats and recursive schemas are not
supported. The build sends its schemas through that transform
(:func:`airflow_claude_batch.core.requests.structured_output.api_schema`), so this rule refuses only what
a user
writes by hand in ``render`` or what the transform cannot fix (a recursive schema).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from airflow_claude_batch.core.api.message_rules import RuleContext, RuleViolation

SCHEMA_SOURCE = (
    "https://platform.claude.com/docs/en/build-with-claude/structured-outputs#json-schema-limitations"
)
SUPPORTED_STRING_FORMATS = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid")
)
_ANY_NODE = frozenset(("type", "description", "title", "enum", "const", "anyOf", "allOf", "$ref", "$defs"))
_BY_TYPE = {
    "object": frozenset(("properties", "additionalProperties", "required")),
    "string": frozenset(("format",)),
    "array": frozenset(("items", "minItems")),
}


def _children(node: Mapping[str, Any], path: str) -> Iterator[tuple[Any, str]]:
    for key in ("anyOf", "allOf"):
        for index, child in enumerate(node.get(key) or ()):
            yield child, f"{path}.{key}.{index}"
    for name, child in (node.get("properties") or {}).items():
        yield child, f"{path}.properties.{name}"
    for name, child in (node.get("$defs") or {}).items():
        yield child, f"{path}.$defs.{name}"
    if isinstance(node.get("items"), Mapping):
        yield node["items"], f"{path}.items"


def _node_problem(node: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(keyword, why)`` for the first thing in this node outside the subset, else ``None``."""
    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types}
    allowed = set(_ANY_NODE).union(*(_BY_TYPE.get(kind, frozenset()) for kind in types))
    for keyword in node:
        if keyword not in allowed:
            return keyword, f"'{keyword}' is not supported"
    if "object" in types and node.get("additionalProperties") is not False:
        return (
            "additionalProperties",
            "For 'object' type, 'additionalProperties' must be explicitly set to false",
        )
    if "format" in node and node["format"] not in SUPPORTED_STRING_FORMATS:
        return "format", f"string format '{node['format']}' is not supported"
    if "minItems" in node and node["minItems"] not in (0, 1):
        return "minItems", f"minItems: {node['minItems']!r} is not supported, only 0 or 1"
    return None


def _refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` below ``node`` (its own included)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if isinstance(item.get("$ref"), str):
                yield item["$ref"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _recursive_definition(schema: Mapping[str, Any]) -> str | None:
    """The first ``$defs`` entry that refers back to itself (directly or through others), else ``None``."""
    definitions = schema.get("$defs")
    if not isinstance(definitions, Mapping):
        return None
    prefix = "#/$defs/"
    edges = {
        name: {ref[len(prefix) :] for ref in _refs(body) if ref.startswith(prefix)}
        for name, body in definitions.items()
    }
    for start in edges:
        seen, stack = set(), list(edges[start])
        while stack:
            name = stack.pop()
            if name == start:
                return start
            if name not in seen:
                seen.add(name)
                stack.extend(edges.get(name, ()))
    return None


def schema_subset_problem(schema: Mapping[str, Any], where: str = "schema") -> tuple[str, str] | None:
    """Return ``(path, message)`` for the first part of ``schema`` outside the subset, else ``None``."""
    recursive = _recursive_definition(schema)
    if recursive is not None:
        return f"{where}.$defs.{recursive}", "recursive schemas are not supported"
    stack: list[tuple[Any, str]] = [(schema, where)]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, Mapping):
            continue
        problem = _node_problem(node)
        if problem is not None:
            keyword, why = problem
            return f"{path}.{keyword}", why
        stack.extend(reversed(list(_children(node, path))))
    return None


def schema_subset_rule(params: Mapping[str, Any], context: RuleContext) -> RuleViolation | None:
    """A structured-output schema outside the supported subset."""
    config = params.get("output_config")
    output_format = config.get("format") if isinstance(config, Mapping) else None
    schema = output_format.get("schema") if isinstance(output_format, Mapping) else None
    if not isinstance(schema, Mapping):
        return None
    problem = schema_subset_problem(schema, "output_config.format.schema")
    if problem is None:
        return None
    path, why = problem
    return RuleViolation(
        "schema-subset",
        f"{path}: {why}",
        path,
        "pass the schema as output_schema= (the build sends it through the SDK's transform_schema), or "
        "run it through anthropic.transform_schema yourself; move constraints into descriptions",
        SCHEMA_SOURCE,
    )


SCHEMA_RULES: tuple[Callable[[Mapping[str, Any], RuleContext], RuleViolation | None], ...] = (
    schema_subset_rule,
)
