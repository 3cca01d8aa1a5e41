"""Input tokens of a run, measured before anything is sent: a uniform sample of requests counted with
the token-counting endpoint and scaled to the run by bytes, or a local estimate from bytes.

With a ``count_tokens`` callable, a uniform sample of about 20 requests spread over the whole run is
counted, and the run's input tokens are the run's request bytes times the sample's tokens per byte.
Without it, or when it fails, the local estimate is UTF-8 bytes of each request's JSON divided by the
model's characters per token (``chars_per_token`` in the model catalogue; 4 when unknown).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.batch.caching import chars_per_token
from airflow_claude_batch.batch.encoding import decode_request
from airflow_claude_batch.batch.rendering import EncodedRequest, RequestTemplate

DEFAULT_SAMPLE_SIZE = 20
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
    """

    tokens_per_byte: float
    cached_prefix_tokens: int
    method: str
    sample_size: int


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
    return TokenRate(1 / ratio, prefix, f"{LOCAL_METHOD}, {ratio:g} ({reason})", 0)


def _counted_rate(
    sample: Sequence[EncodedRequest], template: RequestTemplate, count_tokens: TokenCounter
) -> TokenRate:
    tokens = sum(
        _checked_count(count_tokens(count_tokens_params(decode_request(r.line)["params"]))) for r in sample
    )
    request_bytes = sum(r.size for r in sample)
    prefix = 0
    if template.cache_system and template.system:
        model = template.model or sample[0].model
        stub = [{"role": "user", "content": "."}]
        with_system = count_tokens({"model": model, "system": template.system_param(), "messages": stub})
        without = count_tokens({"model": model, "messages": stub})
        prefix = max(_checked_count(with_system) - _checked_count(without), 0)
    method = f"count_tokens on a sample of {len(sample)} requests, scaled to the run by request bytes"
    return TokenRate(tokens / max(request_bytes, 1), prefix, method, len(sample))


def _checked_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"count_tokens returned {value!r}, not a token count")
    return value


def count_tokens_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The part of Messages params that the token-counting endpoint takes."""
    return {key: params[key] for key in COUNT_TOKENS_FIELDS if key in params}
