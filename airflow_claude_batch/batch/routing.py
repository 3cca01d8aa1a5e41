"""Result lines → outcome rows, and the reconciliation of those rows against the shard's requests.

The fanout of one shard reads the batch's results once, as plain dicts, and writes one row per request
into the shard's outcome files (see ``docs/architecture.md``, "Outcome rows"):

- ``succeeded.jsonl``: ``custom_id``, ``model``, ``text`` (text blocks only), ``tool_calls`` (when
  the answer called tools), ``thinking`` (only with ``keep_thinking``), ``parsed``, ``stop_reason``,
  ``usage``, ``cost_usd`` (batch prices);
- ``invalid_output.jsonl``: a billed answer the user's parser or schema rejected: ``custom_id``,
  ``model``, ``text``, ``error``, ``stop_reason``, ``usage``, ``cost_usd``;
- ``errored.jsonl``: ``custom_id``, ``error_type``, ``message``, ``retryable``, ``request_id``;
- ``expired.jsonl``: ``custom_id``; ``canceled.jsonl``: ``custom_id``, ``cancel_initiated_at`` (the
  batch's, so that the requeue rule can tell a user's cancellation from any other).

Every request of the shard gets exactly one row. Lines for ids the shard does not hold and repeated
lines for an id are counted and left out; a request without any line is a ``ReconciliationError``.
The files are published only once the whole stream was read and reconciled, so a failed or retried
fanout never leaves a half file or a line twice. Memory holds the shard's ids and one line at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import orjson

from airflow_claude_batch.batch.marker import MarkerWatch
from airflow_claude_batch.batch.passthrough import load_passthrough, with_passthrough
from airflow_claude_batch.batch.pricing import PriceTable, TokenTotals
from airflow_claude_batch.batch.runfolder import RunFolder
from airflow_claude_batch.batch.storage import StoragePath, atomic_writer, write_json
from airflow_claude_batch.batch.structured_output import SCHEMA_TOOL_NAME
from airflow_claude_batch.exceptions import InputError, ReconciliationError, ResultsStreamInterrupted

log = logging.getLogger(__name__)

#: The files a fanout writes for every shard, in this order.
ROW_OUTCOMES = ("succeeded", "invalid_output", "errored", "expired", "canceled")
#: Rows that hold a billed answer (and so tokens and cost).
BILLED_OUTCOMES = ("succeeded", "invalid_output")
#: How many times a cut results stream is downloaded again from the start before giving up.
DEFAULT_MAX_STREAM_RESTARTS = 3

#: Error types that a later attempt may get past: capacity and transient server errors. Everything
#: else (invalid_request_error, not_found_error, permission_error, authentication_error,
#: request_too_large, billing_error, and any type this package does not know) needs a change first.
RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})

_MAX_ERROR_CHARS = 1000
_WRITE_BUFFER_BYTES = 1 << 20
# Shard lines are written SDK-encoded, with custom_id first; ids are ASCII without escapes, so the id
# can be taken from the line's start without decoding the (possibly large) params.
_LEADING_CUSTOM_ID = re.compile(rb'^\s*\{\s*"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
_CODE_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```$", re.DOTALL)


# --------------------------------------------------------------------------------------------------
# Reading a shard's requests
# --------------------------------------------------------------------------------------------------


def custom_id_of_line(line: bytes) -> str:
    """Return the ``custom_id`` of one encoded request line.

    :param line: one line of a shard's requests file.
    :raises InputError: when the line holds no ``custom_id`` string.
    """
    match = _LEADING_CUSTOM_ID.match(line)
    if match:
        return match.group(1).decode("ascii")
    custom_id = orjson.loads(line).get("custom_id")
    if not isinstance(custom_id, str):
        raise InputError(f"a request line has no custom_id string: {line[:80]!r}...; rebuild the shard")
    return custom_id


def iter_request_lines(requests_path: StoragePath) -> Iterator[tuple[str, bytes]]:
    """Yield ``(custom_id, line)`` for each request of a shard file, one line in memory at a time.

    :param requests_path: a shard's ``*.requests.jsonl``; lines keep their trailing newline.
    """
    with requests_path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield custom_id_of_line(line), line if line.endswith(b"\n") else line + b"\n"


# --------------------------------------------------------------------------------------------------
# The user's output contract: parser and/or schema
# --------------------------------------------------------------------------------------------------


class InvalidOutput(Exception):
    """The answer's text does not parse or does not match the schema; the message says why."""


def _strip_code_fence(text: str) -> str:
    """Return the JSON inside a single Markdown code fence, which models often wrap JSON in."""
    stripped = text.strip()
    match = _CODE_FENCE.match(stripped)
    return match.group(1) if match else stripped


def _short(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."


def _is_pydantic_model(schema: Any) -> bool:
    return isinstance(schema, type) and hasattr(schema, "model_validate") and hasattr(schema, "model_dump")


class OutputValidator:
    """Turn an answer into the ``parsed`` value, or raise ``InvalidOutput``.

    - ``output_parser`` only: ``parsed = output_parser(text)``; a parser that takes a ``message``
      keyword is called ``output_parser(text, message=message)`` with the whole Message dict (tool
      calls, thinking, stop reason); any exception marks the answer invalid.
    - ``output_schema`` only: the object is the input of the schema's tool call when the answer has
      one (``structured_output="tool"``), else the text read as JSON (a surrounding Markdown code fence
      is removed); it is validated, and a Pydantic model class gives ``model.model_dump(mode="json")``.
    - both: the parser's value is validated against the schema.

    :param output_parser: a callable ``text -> value`` (or ``(text, *, message) -> value``).
    :param output_schema: a JSON-schema dict (validated with ``jsonschema``) or a Pydantic model class.
    :param keep_thinking: keep the answer's thinking blocks in the row (``thinking``); dropped otherwise.
    :raises InputError: when the schema itself is not usable.
    """

    def __init__(
        self,
        output_parser: Callable[..., Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        *,
        keep_thinking: bool = False,
    ) -> None:
        if output_parser is not None and not callable(output_parser):
            raise InputError(f"output_parser must be a callable text -> value, got {type(output_parser)}")
        self._parser = output_parser
        self._parser_takes_message = _takes_message(output_parser)
        self.keep_thinking = keep_thinking
        self._model: Any = None
        self._json_validator: Any = None
        if output_schema is None:
            return
        if _is_pydantic_model(output_schema):
            self._model = output_schema
        elif isinstance(output_schema, Mapping):
            self._json_validator = _json_schema_validator(dict(output_schema))
        else:
            raise InputError(
                f"output_schema must be a JSON-schema dict or a Pydantic model class, got "
                f"{type(output_schema).__name__}"
            )

    @classmethod
    def from_options(
        cls,
        output_parser: Callable[..., Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        *,
        keep_thinking: bool = False,
    ) -> OutputValidator | None:
        """Return a validator, or ``None`` when neither a parser, a schema nor ``keep_thinking`` is set."""
        if output_parser is None and output_schema is None and not keep_thinking:
            return None
        return cls(output_parser, output_schema, keep_thinking=keep_thinking)

    def parse(self, text: str, message: Mapping[str, Any] | None = None) -> Any:
        """Return the parsed value of an answer.

        :param text: the answer's text blocks.
        :param message: the whole Message dict, for the schema's tool call and a parser that reads it.
        :raises InvalidOutput: with a short reason when it does not parse or validate.
        """
        value = self._run_parser(text, message) if self._parser is not None else None
        if self._model is None and self._json_validator is None:
            return value
        if self._parser is None:
            tool_input = schema_tool_input(message)
            if tool_input is not None:
                value, text = tool_input, ""
            elif self._model is None:
                value = self._decode_json(text)
        if self._model is not None:
            return self._validate_model(text, value, from_value=self._parser is not None or not text)
        self._validate_json(value)
        return value

    def _run_parser(self, text: str, message: Mapping[str, Any] | None) -> Any:
        assert self._parser is not None
        try:
            if self._parser_takes_message:
                return self._parser(text, message=dict(message or {}))
            return self._parser(text)
        except Exception as exc:
            raise InvalidOutput(_short(f"output_parser raised {type(exc).__name__}: {exc}")) from exc

    @staticmethod
    def _decode_json(text: str) -> Any:
        try:
            return orjson.loads(_strip_code_fence(text))
        except orjson.JSONDecodeError as exc:
            raise InvalidOutput(_short(f"the answer is not JSON: {exc}")) from exc

    def _validate_json(self, value: Any) -> None:
        from jsonschema.exceptions import best_match

        error = best_match(self._json_validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "(root)"
            raise InvalidOutput(_short(f"schema violation at {where}: {error.message}"))

    def _validate_model(self, text: str, value: Any, *, from_value: bool) -> Any:
        from pydantic import ValidationError

        try:
            if from_value:
                instance = self._model.model_validate(value)
            else:
                instance = self._model.model_validate_json(_strip_code_fence(text))
        except ValidationError as exc:
            raise InvalidOutput(_short(f"{self._model.__name__} validation failed: {exc}")) from exc
        return instance.model_dump(mode="json")


def _takes_message(parser: Callable[..., Any] | None) -> bool:
    import inspect

    if parser is None:
        return False
    try:
        parameters = inspect.signature(parser).parameters
    except (TypeError, ValueError):
        return False
    return "message" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def schema_tool_input(message: Mapping[str, Any] | None) -> Any:
    """Return the input of the answer's call of the schema's tool (``structured_output="tool"``)."""
    for block in (message or {}).get("content") or ():
        if (
            isinstance(block, Mapping)
            and block.get("type") == "tool_use"
            and block.get("name") == SCHEMA_TOOL_NAME
        ):
            return block.get("input")
    return None


def _json_schema_validator(schema: dict[str, Any]) -> Any:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    validator_class = validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        raise InputError(f"output_schema is not a valid JSON schema: {exc.message}; fix the schema") from exc
    return validator_class(schema)


# --------------------------------------------------------------------------------------------------
# One result line → one row
# --------------------------------------------------------------------------------------------------


def is_retryable_error(error_type: str | None) -> bool:
    """Return whether a request that failed with ``error_type`` may succeed when sent again as is."""
    return error_type in RETRYABLE_ERROR_TYPES


def message_text(message: Mapping[str, Any]) -> str:
    """Return the concatenated text blocks of a Message dict (tool and thinking blocks are skipped)."""
    content = message.get("content") or ()
    if len(content) == 1 and isinstance(content[0], Mapping) and content[0].get("type") == "text":
        return content[0].get("text") or ""  # the common case, without a generator
    return "".join(
        block.get("text") or ""
        for block in content
        if isinstance(block, Mapping) and block.get("type") == "text"
    )


_TOKEN_KINDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


class RowPricer:
    """Tokens and dollars of one answer, with each model's per-token rates looked up once.

    Cost is linear in tokens, so each model's five rates are read from the price table once (the cost
    of a million tokens of each kind) and every answer is priced with five multiplications.

    :param prices: the price table.
    :param batch: batch prices (the fanout) or standard prices (a synchronous call).
    """

    def __init__(self, prices: PriceTable, *, batch: bool = True) -> None:
        self.prices = prices
        self.batch = batch
        self._rates: dict[tuple[str, int, float], tuple[float, ...]] = {}

    def price(self, model: str, usage: Mapping[str, Any] | None) -> tuple[TokenTotals, float]:
        """Return the answer's tokens by kind and its cost in US dollars (at its prompt-length tier and
        with the multipliers its usage shows, such as ``inference_geo``).

        :raises InputError: the model has no price (the message says how to add one).
        """
        totals = TokenTotals.from_usage(usage)
        key = self.prices.rate_key(model, usage)
        rates = self._rates.get(key) or self._load(key, totals.total_input)
        cost = (
            totals.input * rates[0]
            + totals.output * rates[1]
            + totals.cache_write_5m * rates[2]
            + totals.cache_write_1h * rates[3]
            + totals.cache_read * rates[4]
        )
        return totals, cost

    def _load(self, key: tuple[str, int, float], prompt_tokens: int) -> tuple[float, ...]:
        million = 1_000_000
        model, _, factor = key
        rates = tuple(
            self.prices.cost_of_totals(
                model,
                TokenTotals(**{kind: million}),
                batch=self.batch,
                prompt_tokens=prompt_tokens,
                factor=factor,
            )
            / million
            for kind in _TOKEN_KINDS
        )
        self._rates[key] = rates
        return rates


class RoutedRow(NamedTuple):
    """One result line routed: the outcome file, the row, and the tokens billed (``None`` if unbilled)."""

    outcome: str
    row: dict[str, Any]
    tokens: TokenTotals | None = None


def tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the answer's tool calls as ``[{"id", "name", "input"}]`` (``[]`` when it has none)."""
    return [
        {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
        for block in message.get("content") or ()
        if isinstance(block, Mapping) and block.get("type") in ("tool_use", "server_tool_use")
    ]


def thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the answer's thinking and redacted-thinking blocks as they came."""
    return [
        dict(block)
        for block in message.get("content") or ()
        if isinstance(block, Mapping) and block.get("type") in ("thinking", "redacted_thinking")
    ]


def answer_row(
    custom_id: str,
    message: Mapping[str, Any],
    *,
    pricer: RowPricer,
    validator: OutputValidator | None,
) -> RoutedRow:
    """Route a billed answer: ``succeeded``, or ``invalid_output`` when the parser/schema rejects it.

    The row keeps every content block that carries an answer: ``text`` (text blocks only),
    ``tool_calls`` when the answer called tools, and ``thinking`` when the validator keeps it.

    :param custom_id: the request's id.
    :param message: the Message as a dict, with its ``usage``.
    :param pricer: prices the answer (batch or standard rates).
    :param validator: the user's parser/schema, or ``None`` to keep the answer unparsed.
    """
    model = message.get("model") or ""
    usage = message.get("usage") or {}
    text = message_text(message)
    tokens, cost = pricer.price(model, usage)
    common: dict[str, Any] = {"custom_id": custom_id, "model": model, "text": text}
    calls = tool_calls(message)
    if calls:
        common["tool_calls"] = calls
    if validator is not None and validator.keep_thinking:
        common["thinking"] = thinking_blocks(message)
    stop_reason = message.get("stop_reason")
    tail = {"stop_reason": stop_reason, "usage": usage, "cost_usd": cost}
    if validator is None:
        return RoutedRow("succeeded", {**common, "parsed": None, **tail}, tokens)
    try:
        parsed = validator.parse(text, message)
    except InvalidOutput as exc:
        reason = str(exc)
        if stop_reason == "max_tokens":
            reason += " (the answer was cut at max_tokens; raise max_tokens)"
        return RoutedRow("invalid_output", {**common, "error": reason, **tail}, tokens)
    return RoutedRow("succeeded", {**common, "parsed": parsed, **tail}, tokens)


def error_row(custom_id: str, error: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the ``errored`` row of an API error response (``{"type": "error", "error": {...}}``)."""
    error = error or {}
    inner = error.get("error") if isinstance(error.get("error"), Mapping) else error
    error_type = str(inner.get("type") or "unknown_error")
    return {
        "custom_id": custom_id,
        "error_type": error_type,
        "message": inner.get("message") or "",
        "retryable": is_retryable_error(error_type),
        "request_id": error.get("request_id"),
    }


def route_line(
    line: Mapping[str, Any],
    *,
    pricer: RowPricer,
    validator: OutputValidator | None,
    cancel_initiated_at: str | None = None,
) -> RoutedRow:
    """Route one result line to its outcome file.

    An unrecognised result type becomes a non-retryable ``errored`` row, so the request stays
    accounted for (and dead-lettered with the reason) instead of vanishing.
    """
    custom_id = line["custom_id"]
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return answer_row(custom_id, result.get("message") or {}, pricer=pricer, validator=validator)
    if kind == "errored":
        return RoutedRow("errored", error_row(custom_id, result.get("error")))
    if kind == "expired":
        return RoutedRow("expired", {"custom_id": custom_id})
    if kind == "canceled":
        return RoutedRow("canceled", {"custom_id": custom_id, "cancel_initiated_at": cancel_initiated_at})
    unrecognised = {
        "custom_id": custom_id,
        "error_type": "unrecognised_result",
        "message": f"result type {kind!r} is not one this package knows; upgrade the package",
        "retryable": False,
        "request_id": None,
    }
    return RoutedRow("errored", unrecognised)


# --------------------------------------------------------------------------------------------------
# Reconciliation of the stream against the shard
# --------------------------------------------------------------------------------------------------


class Reconciler:
    """Say, for each result line, whether it is the first for a request of the shard.

    The stream may be downloaded again from the start after a cut (``begin_attempt``): a line for an id
    already seen in an earlier attempt is a replay and skipped silently, while a second line for an id
    within one attempt is a duplicate and counted. Results come in arbitrary order, so no position is
    trusted across attempts.

    :param expected_ids: the custom_ids of the shard's requests (never the whole run).
    """

    def __init__(self, expected_ids: Iterable[str]) -> None:
        # id -> the attempt in which it was last seen (0: not yet)
        self._seen: dict[str, int] = dict.fromkeys(expected_ids, 0)
        self._unknown: dict[str, int] = {}
        self._repeats: dict[str, int] = {}
        self._extra: dict[str, int] = {}
        self.attempt = 1
        self.accepted = 0

    @property
    def expected(self) -> int:
        return len(self._seen)

    def ids(self) -> Iterable[str]:
        """The shard's custom_ids."""
        return self._seen.keys()

    def begin_attempt(self) -> None:
        """Start reading the stream again from its beginning."""
        self.attempt += 1
        self._repeats.clear()

    def accept(self, custom_id: Any) -> bool:
        """Return ``True`` when this line is the first for a request of the shard (write it)."""
        if not isinstance(custom_id, str):
            custom_id = repr(custom_id)
        book = self._seen if custom_id in self._seen else self._unknown
        previous = book.get(custom_id, 0)
        book[custom_id] = self.attempt
        if previous == 0:
            if book is self._seen:
                self.accepted += 1
                return True
            return False
        if previous == self.attempt:
            self._count_repeat(custom_id)
        return False

    def _count_repeat(self, custom_id: str) -> None:
        # the largest number of extra lines seen for this id in any one attempt
        repeats = self._repeats.get(custom_id, 0) + 1
        self._repeats[custom_id] = repeats
        if repeats > self._extra.get(custom_id, 0):
            self._extra[custom_id] = repeats

    @property
    def unknown_ids(self) -> int:
        """Distinct ids in the stream that the shard does not hold."""
        return len(self._unknown)

    @property
    def duplicates(self) -> int:
        """Result lines beyond the first for one id, within one reading of the stream."""
        return sum(self._extra.values())

    def unknown_sample(self, limit: int = 5) -> list[str]:
        return list(self._unknown)[:limit]

    def missing(self, limit: int | None = None) -> list[str]:
        """Ids of the shard that no line accounted for (up to ``limit``)."""
        found: list[str] = []
        for custom_id, attempt in self._seen.items():
            if attempt == 0:
                found.append(custom_id)
                if limit is not None and len(found) >= limit:
                    break
        return found


# --------------------------------------------------------------------------------------------------
# The shard's outcome files
# --------------------------------------------------------------------------------------------------


class OutcomeFiles:
    """The outcome files of one shard, written through temporary writers and published together.

    Use as a context manager: on a clean exit every file is published whole (including empty ones, so
    their presence says the fanout finished); on an exception none is.
    """

    def __init__(self, paths: Mapping[str, StoragePath]) -> None:
        self._paths = dict(paths)
        self._stack = ExitStack()
        self._handles: dict[str, IO[bytes]] = {}
        self._buffers: dict[str, bytearray] = {}

    def __enter__(self) -> OutcomeFiles:
        with ExitStack() as stack:
            for outcome, path in self._paths.items():
                self._handles[outcome] = stack.enter_context(atomic_writer(path))
                self._buffers[outcome] = bytearray()
            self._stack = stack.pop_all()
        return self

    def write(self, outcome: str, row: Mapping[str, Any]) -> None:
        buffer = self._buffers[outcome]
        buffer += orjson.dumps(row)
        buffer += b"\n"
        if len(buffer) >= _WRITE_BUFFER_BYTES:
            self._handles[outcome].write(buffer)
            buffer.clear()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is None:
            try:
                for outcome, buffer in self._buffers.items():
                    if buffer:
                        self._handles[outcome].write(buffer)
            except BaseException as flush_error:
                # let every writer discard its temporary file, then report the flush failure
                self._stack.__exit__(type(flush_error), flush_error, flush_error.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, tb)


def shard_outcome_paths(folder: RunFolder, round_index: int, shard_index: int) -> dict[str, StoragePath]:
    """Return ``{outcome: path}`` of the shard's outcome files."""
    return {outcome: folder.shard_outcome(round_index, shard_index, outcome) for outcome in ROW_OUTCOMES}


# --------------------------------------------------------------------------------------------------
# The fanout of one shard
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FanoutSummary:
    """What the fanout of one shard wrote and spent.

    :param outcome_counts: rows per outcome file.
    :param unknown_ids: distinct ids in the results that the shard does not hold (left out).
    :param duplicates: repeated lines for one id (left out).
    :param tokens: token totals over billed answers.
    :param cost_usd: their cost at batch prices.
    :param stream_restarts: how often a cut stream was downloaded again.
    """

    outcome_counts: dict[str, int]
    unknown_ids: int
    duplicates: int
    tokens: TokenTotals
    cost_usd: float
    stream_restarts: int = 0

    def descriptor_counts(self) -> dict[str, int]:
        """The counts for the shard descriptor: rows per outcome plus the reconciliation anomalies."""
        return {**self.outcome_counts, "unknown_ids": self.unknown_ids, "duplicates": self.duplicates}


class _Accounts:
    """Rows per outcome, and tokens per model as plain counters (one addition per kind and row)."""

    def __init__(self, pricer: RowPricer) -> None:
        self.pricer = pricer
        self.counts = dict.fromkeys(ROW_OUTCOMES, 0)
        self.tokens_by_model: dict[str, list[int]] = {}

    def add(self, routed: RoutedRow) -> None:
        self.counts[routed.outcome] += 1
        totals = routed.tokens
        if totals is not None:
            model = routed.row["model"]
            counters = self.tokens_by_model.get(model)
            if counters is None:
                counters = self.tokens_by_model[model] = [0] * len(_TOKEN_KINDS)
            counters[0] += totals.input
            counters[1] += totals.output
            counters[2] += totals.cache_write_5m
            counters[3] += totals.cache_write_1h
            counters[4] += totals.cache_read

    def totals(self) -> TokenTotals:
        total = TokenTotals()
        for counters in self.tokens_by_model.values():
            total = total + TokenTotals(*counters)
        return total

    def cost(self) -> float:
        prices, batch = self.pricer.prices, self.pricer.batch
        return sum(
            prices.cost_of_totals(model, TokenTotals(*counters), batch=batch)
            for model, counters in self.tokens_by_model.items()
        )


def fan_out_shard(
    *,
    folder: RunFolder,
    round_index: int,
    shard_index: int,
    requests_path: StoragePath,
    open_results: Callable[[], Iterable[Mapping[str, Any]]],
    prices: PriceTable,
    validator: OutputValidator | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
    cancel_initiated_at: str | None = None,
    batch_id: str | None = None,
    marker_id: str | None = None,
    max_stream_restarts: int = DEFAULT_MAX_STREAM_RESTARTS,
) -> FanoutSummary:
    """Stream a shard's results once into its outcome files and reconcile them with its requests.

    :param folder: the run folder.
    :param round_index: the shard's round.
    :param shard_index: the shard's number in its round.
    :param requests_path: the shard's requests file (its custom_ids are the expected set).
    :param open_results: returns a fresh iterator of result lines from the start of the stream; it may
        raise ``ResultsStreamInterrupted`` while iterating, after which it is called again.
    :param prices: prices for each answer's ``cost_usd`` (batch rates).
    :param validator: the user's parser/schema, or ``None``.
    :param sink: called with each succeeded row as it streams. A retried task calls it again for the
        same rows, so it should upsert by ``custom_id``.
    :param cancel_initiated_at: the batch's ``cancel_initiated_at``, kept on canceled rows.
    :param batch_id: for messages.
    :param marker_id: the batch's marker request: its line must be in the results (else nothing is
        written) and goes to ``marker.json``, out of the outcome files.
    :param max_stream_restarts: downloads again from the start after a cut, at most this many times.
    :raises ReconciliationError: when a request of the shard has no result line.
    :raises ResultsStreamInterrupted: when the stream was cut more often than allowed.
    """
    where = f"batch {batch_id} (round {round_index}, shard {shard_index})"
    reconciler = Reconciler(custom_id for custom_id, _ in iter_request_lines(requests_path))
    carried = load_passthrough(folder, reconciler.ids())
    pricer = RowPricer(prices, batch=True)
    accounts = _Accounts(pricer)
    marker = MarkerWatch(marker_id)
    restarts = 0
    with OutcomeFiles(shard_outcome_paths(folder, round_index, shard_index)) as files:
        while True:
            try:
                for line in open_results():
                    if marker.take(line) or not reconciler.accept(line.get("custom_id")):
                        continue
                    routed = route_line(
                        line, pricer=pricer, validator=validator, cancel_initiated_at=cancel_initiated_at
                    )
                    row = with_passthrough(routed.row, carried)
                    files.write(routed.outcome, row)
                    accounts.add(routed)
                    if sink is not None and routed.outcome == "succeeded":
                        sink(dict(row))
                break
            except ResultsStreamInterrupted:
                if restarts >= max_stream_restarts:
                    raise
                restarts += 1
                log.warning(
                    "%s: the results stream was cut (%d lines kept so far); downloading again from the "
                    "start (%d/%d)",
                    where,
                    reconciler.accepted,
                    restarts,
                    max_stream_restarts,
                )
                reconciler.begin_attempt()
        _check_shortfall(reconciler, where)
        marker.check(where)
        if marker.line is not None:
            routed = route_line(marker.line, pricer=pricer, validator=None)
            write_json(
                folder.shard_marker(round_index, shard_index), {"outcome": routed.outcome, **routed.row}
            )
    summary = FanoutSummary(
        outcome_counts=accounts.counts,
        unknown_ids=reconciler.unknown_ids,
        duplicates=reconciler.duplicates,
        tokens=accounts.totals(),
        cost_usd=accounts.cost(),
        stream_restarts=restarts,
    )
    _log_anomalies(reconciler, where)
    return summary


def _check_shortfall(reconciler: Reconciler, where: str) -> None:
    missing = reconciler.missing(limit=5)
    if not missing:
        return
    count = len(reconciler.missing())
    raise ReconciliationError(
        f"{where}: {count} of {reconciler.expected} requests have no result line (for example "
        f"{', '.join(missing)}); nothing was written. Retry the fanout; if it persists, the batch's "
        f"results are incomplete: compare its request_counts with the shard's requests file."
    )


def _log_anomalies(reconciler: Reconciler, where: str) -> None:
    if reconciler.unknown_ids:
        log.warning(
            "%s: %d result ids are not in the shard and were left out (for example %s)",
            where,
            reconciler.unknown_ids,
            ", ".join(reconciler.unknown_sample()),
        )
    if reconciler.duplicates:
        log.warning("%s: %d repeated result lines were left out", where, reconciler.duplicates)
