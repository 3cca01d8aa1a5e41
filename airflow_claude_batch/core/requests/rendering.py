"""Records become batch requests ``{"custom_id", "params"}``, checked before anything is sent.

Two ways to render a record:

- a template: ``custom_id`` from ``custom_id_field``, the user turn from ``prompt_field``, and the
  operator's ``model``, ``max_tokens`` and ``system`` (optionally marked for prompt caching);
- a ``render`` callable that returns the full Messages params (multi-turn, images, tools); the
  operator's ``model``, ``max_tokens`` and ``system`` fill in what it leaves out.

The ``custom_id`` is the user's id, exactly: an id that breaks the API's rule is an error, never
rewritten (an integer id is written in decimal, its only text form). Ids must be unique across the
whole run (:mod:`.request_stream`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from airflow_claude_batch.core.api.encoding import decode_request, encode_json, encode_text, sdk_json_bytes
from airflow_claude_batch.core.api.limits import CUSTOM_ID_PATTERN, MAX_BATCH_BYTES
from airflow_claude_batch.core.api.message_rules import prompt_chars
from airflow_claude_batch.core.api.model_catalogue import load_models
from airflow_claude_batch.core.api.request_rules import first_violation
from airflow_claude_batch.core.api.validation import custom_id_problem, params_problem
from airflow_claude_batch.core.requests.cache_prefix import CachePrefix, cached_prefix
from airflow_claude_batch.core.requests.marker import MARKER_PREFIX, is_marker
from airflow_claude_batch.core.requests.sources import Record
from airflow_claude_batch.core.requests.structured_output import merge_additions
from airflow_claude_batch.exceptions import InputError

CACHE_TTLS = ("5m", "1h")
RenderCallable = Callable[[Record], "Mapping[str, Any] | None"]
_MISSING = object()
_valid_id = CUSTOM_ID_PATTERN.fullmatch
_dumps = orjson.dumps


class EncodedRequest(NamedTuple):
    """One request, encoded as it is sent, with what the builder needs to shard and price it.

    :param custom_id: the request's id.
    :param line: the request's SDK-exact JSON followed by ``\\n`` (a shard file's line).
    :param location: where the record came from (``tickets.jsonl:42``).
    :param model: ``params.model``.
    :param max_tokens: ``params.max_tokens``.
    :param cache_prefix: the request's cacheable prefix (``cache_control`` anywhere in its tools, system
        or messages, or at the top level), for the estimate.
    :param inference_geo: ``params.inference_geo``, which some prices multiply (data residency).
    """

    custom_id: str
    line: bytes
    location: str
    model: str
    max_tokens: int
    cache_prefix: CachePrefix = CachePrefix()
    inference_geo: str | None = None

    @property
    def size(self) -> int:
        """Bytes the request adds to a create body."""
        return len(self.line) - 1

    @classmethod
    def from_line(cls, line: bytes, location: str) -> EncodedRequest:
        """Rebuild from a shard file's line (a requeue resends the original requests unchanged).

        :param line: one line of a shard file, with or without its ``\\n``.
        :param location: where the line is (``round-0/shard-00000.requests.jsonl:7``).
        """
        body = line.rstrip(b"\r\n")
        request = decode_request(body)
        params = request["params"]
        geo = params.get("inference_geo")
        return cls(
            request["custom_id"],
            body + b"\n",
            location,
            params["model"],
            params["max_tokens"],
            cached_prefix(params),
            geo if isinstance(geo, str) else None,
        )


@dataclass(frozen=True)
class RequestTemplate:
    """How a record becomes a request.

    :param custom_id_field: the record field that holds the id.
    :param prompt_field: the record field that holds the user turn (text, or a list of content blocks).
    :param model: the model; required unless ``render`` sets it.
    :param max_tokens: the output limit per request.
    :param system: a system prompt for every request.
    :param cache_system: ``"5m"`` or ``"1h"`` to mark ``system`` for prompt caching.
    :param render: a callable ``record -> Messages params`` used instead of ``prompt_field``.
    :param additions: params every request gets on top (the structured-output ``output_config``, or
        the schema's tool and ``tool_choice``; see
        :mod:`~airflow_claude_batch.core.requests.structured_output`).
    :param anthropic_version: the ``anthropic-version`` the requests are sent under (the connection's),
        for the API's rules that depend on it.
    :param betas: the ``anthropic-beta`` values they are sent with (the output-300k beta lifts
        ``max_tokens``).
    """

    custom_id_field: str = "id"
    prompt_field: str = "text"
    model: str | None = None
    max_tokens: int = 1024
    system: str | None = None
    cache_system: str | None = None
    render: RenderCallable | None = None
    additions: Mapping[str, Any] | None = None
    anthropic_version: str = "2023-06-01"
    betas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("custom_id_field", "prompt_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be the name of a record field, got {value!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InputError(f"max_tokens must be a whole number >= 1, got {self.max_tokens!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise InputError(f"model must be a model name such as 'claude-sonnet-4-6', got {self.model!r}")
        if self.model is None and self.render is None:
            raise InputError("model is not set; pass model= (for example 'claude-sonnet-4-6')")
        if self.system is not None and not isinstance(self.system, str):
            raise InputError(f"system must be text, got {type(self.system).__name__}")
        if self.cache_system not in (None, *CACHE_TTLS):
            raise InputError(f"cache_system must be '5m', '1h' or None, got {self.cache_system!r}")
        if self.cache_system and not self.system:
            raise InputError("cache_system is set but system is empty; set system= or drop cache_system")
        if self.render is not None and not callable(self.render):
            raise InputError(f"render must be a callable record -> params, got {type(self.render).__name__}")

    def api_rule_problem(self, params: Mapping[str, Any]) -> str | None:
        """Say which of the API's request rules ``params`` break, with the fix, or return ``None``.

        Only for a model the catalogue knows (an unknown one is the model check's to refuse).
        """
        model = params.get("model")
        spec = load_models().find(model) if isinstance(model, str) else None
        if spec is None:
            return None
        violation = first_violation(params, spec, version=self.anthropic_version, betas=self.betas)
        return None if violation is None else violation.describe()

    def system_param(self) -> str | list[dict[str, Any]] | None:
        """The ``system`` value of each request: plain text, or one text block marked for caching."""
        if not self.system:
            return None
        if self.cache_system is None:
            return self.system
        cache_control: dict[str, str] = {"type": "ephemeral"}
        if self.cache_system == "1h":
            cache_control["ttl"] = "1h"
        return [{"type": "text", "text": self.system, "cache_control": cache_control}]


class RequestRenderer:
    """Turns records into :class:`EncodedRequest` according to a :class:`RequestTemplate`.

    Template requests are assembled from pre-encoded pieces (the fixed part of the line is encoded
    once, then only the id and the prompt per record), which gives the same bytes as encoding the whole
    request and is several times faster.
    """

    def __init__(self, template: RequestTemplate) -> None:
        self.template = template
        self._id_field = template.custom_id_field
        self._prompt_field = template.prompt_field
        self._system = template.system_param()
        self._cache_prefix = (
            cached_prefix({"system": self._system}) if self._system is not None else CachePrefix()
        )
        self._model = template.model
        self._max_tokens = template.max_tokens
        # A template request's prompt is the only part that changes per record: past this many
        # characters it may not fit the model's context window, and the rules are run on the record.
        self._prompt_chars_limit = float("inf")
        if template.render is None:
            self._head, self._middle, self._tail = self._line_pieces()

    def _template_params(self, content: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.template.model, "max_tokens": self.template.max_tokens}
        if self._system is not None:
            params["system"] = self._system
        params["messages"] = [{"role": "user", "content": content}]
        params.update(self.template.additions or {})
        return params

    def _line_pieces(self) -> tuple[bytes, bytes, bytes]:
        # Encode the request once with unique markers in place of the id and the prompt, then cut it
        # at the markers: every request is head + id + middle + prompt + tail.
        id_marker, prompt_marker = f"id-{uuid.uuid4().hex}", f"prompt-{uuid.uuid4().hex}"
        params = self._template_params(prompt_marker)
        problem = params_problem(params) or self.template.api_rule_problem(params)
        if problem:
            raise InputError(problem)
        spec = load_models().find(self.template.model or "")
        if spec is not None:
            others = prompt_chars(params) - len(prompt_marker)
            self._prompt_chars_limit = spec.context_window * spec.chars_per_token - others
        encoded = sdk_json_bytes({"custom_id": id_marker, "params": params})
        head, rest = encoded.split(sdk_json_bytes(id_marker))
        middle, tail = rest.split(sdk_json_bytes(prompt_marker))
        return head + b'"', b'"' + middle, tail + b"\n"

    def custom_id(self, record: Record, location: str) -> str:
        """The record's id, checked against the API's rule.

        :raises InputError: the id is missing or breaks the rule; the message says how to fix it.
        """
        value = record.get(self._id_field, _MISSING)
        if is_marker(value):
            raise InputError(
                f"custom_id {value!r} starts with {MARKER_PREFIX!r}, which marks the package's own marker "
                "request in every batch; rename the ids that start with it in the source",
                location=location,
                rule="custom_id",
            )
        if type(value) is str and CUSTOM_ID_PATTERN.fullmatch(value):
            return value
        if type(value) is int:
            value = str(value)
            if CUSTOM_ID_PATTERN.fullmatch(value):
                return value
        raise InputError(self._custom_id_problem(record, value), location=location, rule="custom_id")

    def _custom_id_problem(self, record: Record, value: Any) -> str:
        if value is None:
            return (
                f"the record's {self._id_field!r} is null; give every record an id, or set "
                "custom_id_field= to the field that holds it"
            )
        if value is _MISSING:
            fields = ", ".join(repr(name) for name in list(record)[:12]) or "none"
            return (
                f"the record has no {self._id_field!r} field (its fields: {fields}); set custom_id_field= "
                "to the field that holds each record's id"
            )
        return custom_id_problem(value) or f"custom_id {value!r} breaks the API's rule; fix it in the source"

    def render(self, record: Record, location: str) -> EncodedRequest:
        """Render and validate one record.

        :param record: the record.
        :param location: where it came from, for error messages.
        :raises InputError: the record cannot become a valid request; the message names the fix.
        """
        custom_id = record.get(self._id_field)
        # The fast path takes a valid id as it is, but never a marker's: the full check refuses it.
        if type(custom_id) is not str or not _valid_id(custom_id) or custom_id.startswith(MARKER_PREFIX):
            custom_id = self.custom_id(record, location)
        if self.template.render is not None:
            return self._render_with_callable(custom_id, record, location)
        prompt = record.get(self._prompt_field)
        if type(prompt) is str and prompt and not prompt.isspace():
            if len(prompt) > self._prompt_chars_limit:
                return self._encode(custom_id, self._template_params(prompt), location)
            try:
                text = _dumps(prompt)
            except orjson.JSONEncodeError:
                text = encode_text(prompt, location=location)  # raises with the reason and the record
            line = b"".join((self._head, custom_id.encode(), self._middle, text, self._tail))
            return EncodedRequest(
                custom_id, line, location, self._model, self._max_tokens, self._cache_prefix
            )
        if isinstance(prompt, list) and prompt:
            return self._encode(custom_id, self._template_params(prompt), location)
        raise InputError(self._prompt_problem(record, prompt), location=location, rule="prompt")

    def _prompt_problem(self, record: Record, prompt: Any) -> str:
        field = self._prompt_field
        if field not in record or prompt is None:
            fields = ", ".join(repr(name) for name in list(record)[:12]) or "none"
            return (
                f"the record has no {field!r} field (its fields: {fields}); set prompt_field= to the field "
                "that holds the prompt, or pass render="
            )
        if isinstance(prompt, (str, list)):
            return f"the record's {field!r} is empty; give every record a prompt or filter empty ones out"
        return (
            f"the record's {field!r} is a {type(prompt).__name__}, not text; convert it to text or pass "
            "render= to build the params"
        )

    def _render_with_callable(self, custom_id: str, record: Record, location: str) -> EncodedRequest:
        render = self.template.render
        assert render is not None
        try:
            result = render(record)
        except Exception as exc:
            raise InputError(
                f"render failed: {type(exc).__name__}: {exc}; fix the render callable",
                location=location,
                rule="render",
            ) from exc
        if not result:
            raise InputError(
                "render returned nothing; return the Messages params (a dict with 'messages') for every "
                "record, or filter the record out of the source",
                location=location,
                rule="render",
            )
        if not isinstance(result, Mapping):
            raise InputError(
                f"render returned a {type(result).__name__}; return the Messages params as a dict",
                location=location,
                rule="render",
            )
        if "params" in result and "custom_id" in result:
            raise InputError(
                "render returned a whole request ({custom_id, params}); return only the params, the id "
                "comes from custom_id_field",
                location=location,
                rule="render",
            )
        params = dict(result)
        if self.template.model is not None:
            params.setdefault("model", self.template.model)
        params.setdefault("max_tokens", self.template.max_tokens)
        if "system" not in params and self._system is not None:
            params["system"] = self._system
        params = merge_additions(params, self.template.additions or {}, location)
        return self._encode(custom_id, params, location)

    def _encode(self, custom_id: str, params: dict[str, Any], location: str) -> EncodedRequest:
        problem = params_problem(params)
        if problem:
            raise InputError(f"{problem}", location=location, rule=getattr(problem, "rule", None) or "params")
        line = encode_json({"custom_id": custom_id, "params": params}, location=location) + b"\n"
        # The API refuses a create over its byte limit before it reads a request (413): such a request
        # is left to the shard writer, which names that limit; the request rules come after.
        problem = None if len(line) > MAX_BATCH_BYTES else self.template.api_rule_problem(params)
        if problem:
            raise InputError(problem, location=location)
        geo = params.get("inference_geo")
        return EncodedRequest(
            custom_id,
            line,
            location,
            params["model"],
            params["max_tokens"],
            cached_prefix(params),
            geo if isinstance(geo, str) else None,
        )
