"""Input tokens of a run, measured before anything is sent: a uniform sample of requests counted with
the token-counting endpoint and scaled to the run by bytes, or a local estimate from bytes.

With a ``count_tokens`` callable, a uniform sample of about 20 requests spread over the whole run is
counted, and the run's input tokens are the run's request bytes times the sample's tokens per byte.
Without it, or when it fails, the local estimate is UTF-8 bytes of each request's JSON divided by the
model's characters per token (``chars_per_token`` in the model catalogue; 4 when unknown).

Those are expected figures. The upper bound's input (:class:`TokenRate`, ``upper_*``) is never the
mean, because a sample's mean undershoots a run of widely varied requests (a 20-request sample of
10,000 fell 7.7 % short):

- without ``count_tokens``: **one token per byte** of the request's UTF-8 JSON. A byte-level tokenizer
  makes at most one token of each byte of text, and the JSON around the text (quotes, keys, braces)
  outweighs the few tokens the API adds around each message: a bound for any script;
- with a ``count_tokens`` sample: ASCII bytes at the **densest sampled request's** tokens per byte plus
  ``UPPER_MARGIN`` (25 %), at most one; bytes outside ASCII at **one token per byte**, since the sample
  may hold none of a run's Chinese, Japanese or other non-Latin text. For ASCII this bounds what the
  sample saw, not every possible record (a request of digits or random strings can be denser); the
  local rule above is the one that bounds without exceptions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.api.encoding import decode_request
from airflow_claude_batch.core.requests.cache_prefix import chars_per_token
from airflow_claude_batch.core.requests.rendering import EncodedRequest, RequestTemplate

DEFAULT_SAMPLE_SIZE = 20
#: The margin over the densest sampled request's tokens per byte that the upper bound allows for ASCII.
UPPER_MARGIN = 0.25
#: Tokens per byte no request exceeds (one token per byte of UTF-8 JSON): the upper bound without counts.
MAX_TOKENS_PER_BYTE = 1.0
LOCAL_METHOD = "local: UTF-8 bytes of each request's JSON / the model's characters per token"
#: The Messages params that the token-counting endpoint accepts; the rest (max_tokens, temperature,
#: metadata...) does not change the input and is left out.
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")

TokenCounter = Callable[[Mapping[str, Any]], int]


class ReservoirSample:
    """A uniform random sample of fixed size from a stream of unknown length (Algorithm L).

    Each item costs a counter increment; random numbers are drawn only for the few items taken, so
    sampling a million requests is nearly free. Seeded, so a rerun samples the same requests.

    :param size: how many items to keep.
    :param seed: the random seed.
    """

    def __init__(self, size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> None:
        self.size = size
        self.items: list[EncodedRequest] = []
        self.seen = 0
        self._random = random.Random(seed)
        self._weight = 1.0
        self._next = size

    def offer(self, item: EncodedRequest) -> None:
        """Consider one item of the stream."""
        position = self.seen
        self.seen = position + 1
        if position < self.size:
            self.items.append(item)
            if position == self.size - 1:
                self._weight = self._draw_weight()
                self._next = position + self._skip()
        elif position == self._next:
            self.items[self._random.randrange(self.size)] = item
            self._weight *= self._draw_weight()
            self._next = position + self._skip()

    def _draw_weight(self) -> float:
        return math.exp(math.log(self._uniform()) / self.size)

    def _skip(self) -> int:
        if self._weight >= 1.0:
            return 1
        return int(math.log(self._uniform()) / math.log1p(-self._weight)) + 1

    def _uniform(self) -> float:
        return self._random.random() or 1e-300


@dataclass(frozen=True)
class TokenRate:
    """How request bytes turn into input tokens.

    :param tokens_per_byte: input tokens per request byte.
    :param cached_prefix_tokens: tokens of the cached system prompt in each request (0 without cache).
    :param method: how the figures were obtained, for ``estimate.json``.
    :param sample_size: requests counted (0 for the local estimate).
    :param upper_ascii_tokens_per_byte: the upper bound's tokens per ASCII byte (``None``:
        ``tokens_per_byte``, for figures given by hand).
    :param upper_other_tokens_per_byte: the upper bound's tokens per byte outside ASCII (``None``: as
        ASCII).
    """

    tokens_per_byte: float
    cached_prefix_tokens: int
    method: str
    sample_size: int
    upper_ascii_tokens_per_byte: float | None = None
    upper_other_tokens_per_byte: float | None = None

    @property
    def upper_ascii(self) -> float:
        """Tokens per ASCII byte in the upper bound (never below the expected figure's)."""
        return max(self.tokens_per_byte, self.upper_ascii_tokens_per_byte or 0.0)

    @property
    def upper_other(self) -> float:
        """Tokens per byte outside ASCII in the upper bound."""
        other = self.upper_other_tokens_per_byte
        return self.upper_ascii if other is None else max(self.upper_ascii, other)

    def upper_tokens(self, request_bytes: float, non_ascii_bytes: float) -> float:
        """The upper bound's input tokens of ``request_bytes`` of which ``non_ascii_bytes`` are not ASCII."""
        return (request_bytes - non_ascii_bytes) * self.upper_ascii + non_ascii_bytes * self.upper_other


def measure_tokens(
    sample: Sequence[EncodedRequest], template: RequestTemplate, count_tokens: TokenCounter | None
) -> TokenRate:
    """Count the sample's input tokens with ``count_tokens``, or fall back to the local estimate.

    :param sample: requests drawn over the run.
    :param template: the run's template (its cached system prompt is measured on its own).
    :param count_tokens: ``params -> input_tokens``, or ``None``.
    """
    reason = "no token counter"
    if count_tokens is not None and sample:
        try:
            return _counted_rate(sample, template, count_tokens)
        except Exception as exc:  # any failure of an optional service falls back to the local figure
            reason = f"count_tokens failed: {type(exc).__name__}"
    model = template.model or (sample[0].model if sample else None)
    ratio = chars_per_token(model)
    prefix = 0
    if template.cache_system and template.system:
        prefix = math.ceil(len(template.system.encode("utf-8")) / ratio)
    method = f"{LOCAL_METHOD}, {ratio:g} ({reason}); upper bound: one token per byte"
    return TokenRate(1 / ratio, prefix, method, 0, MAX_TOKENS_PER_BYTE, MAX_TOKENS_PER_BYTE)


def _counted_rate(
    sample: Sequence[EncodedRequest], template: RequestTemplate, count_tokens: TokenCounter
) -> TokenRate:
    counts = [
        _checked_count(count_tokens(count_tokens_params(decode_request(r.line)["params"]))) for r in sample
    ]
    tokens = sum(counts)
    request_bytes = sum(r.size for r in sample)
    densest = max(count / max(r.size, 1) for count, r in zip(counts, sample, strict=True))
    prefix = 0
    if template.cache_system and template.system:
        model = template.model or sample[0].model
        stub = [{"role": "user", "content": "."}]
        with_system = count_tokens({"model": model, "system": template.system_param(), "messages": stub})
        without = count_tokens({"model": model, "messages": stub})
        prefix = max(_checked_count(with_system) - _checked_count(without), 0)
    method = (
        f"count_tokens on a sample of {len(sample)} requests, scaled to the run by request bytes; upper "
        f"bound: the densest sampled request's tokens per byte + {UPPER_MARGIN:.0%} for ASCII, one token "
        "per byte outside ASCII"
    )
    upper_ascii = min(densest * (1 + UPPER_MARGIN), MAX_TOKENS_PER_BYTE)
    return TokenRate(
        tokens / max(request_bytes, 1), prefix, method, len(sample), upper_ascii, MAX_TOKENS_PER_BYTE
    )


def _checked_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"count_tokens returned {value!r}, not a token count")
    return value


def count_tokens_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The part of Messages params that the token-counting endpoint takes."""
    return {key: params[key] for key in COUNT_TOKENS_FIELDS if key in params}
