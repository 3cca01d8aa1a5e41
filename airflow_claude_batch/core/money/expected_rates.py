"""What the expected cost expects, and why: learned from earlier runs of the pipeline, else the user's
``expected_output_tokens``, else documented defaults (half of ``max_tokens`` of output, the default
cache hit rate of :mod:`~airflow_claude_batch.core.requests.cache_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.money.cost_history import LearnedFigures
from airflow_claude_batch.core.requests.cache_prefix import DEFAULT_HIT_RATE

#: Without history or ``expected_output_tokens``, a request is expected to use this share of its
#: ``max_tokens``.
DEFAULT_OUTPUT_FRACTION = 0.5


@dataclass(frozen=True)
class Expectation:
    """The figures the expected cost uses, and where they come from.

    :param basis: ``{"kind": "history" | "user" | "default", ...}`` for ``estimate.json``.
    :param hit_rate: the share of cacheable prefixes read from the cache.
    :param output_per_request: output tokens per request (``None``: ``DEFAULT_OUTPUT_FRACTION`` of
        ``max_tokens``).
    :param input_ratio: input tokens billed per input token estimated.
    :param answered_batch: requests answered in a batch, per request.
    :param answered_sync: requests answered by a synchronous retry, per request.
    """

    basis: dict[str, Any]
    hit_rate: float
    output_per_request: float | None  # None: DEFAULT_OUTPUT_FRACTION of max_tokens
    input_ratio: float
    answered_batch: float
    answered_sync: float

    @classmethod
    def choose(cls, expected_output_tokens: int | None, learned: LearnedFigures | None) -> Expectation:
        """History first, then the user's ``expected_output_tokens``, then the defaults."""
        if learned is not None:
            return cls(
                basis={"kind": "history", "runs": len(learned.runs), "learned": learned.to_dict()},
                hit_rate=DEFAULT_HIT_RATE if learned.hit_rate is None else learned.hit_rate,
                output_per_request=learned.output_per_answer,
                input_ratio=learned.input_ratio or 1.0,
                answered_batch=learned.answered_batch_fraction,
                answered_sync=learned.answered_sync_fraction,
            )
        if expected_output_tokens is not None:
            kind = {"kind": "user", "expected_output_tokens": expected_output_tokens}
            return cls(kind, DEFAULT_HIT_RATE, float(expected_output_tokens), 1.0, 1.0, 0.0)
        return cls(
            {"kind": "default", "output_fraction_of_max_tokens": DEFAULT_OUTPUT_FRACTION},
            DEFAULT_HIT_RATE,
            None,
            1.0,
            1.0,
            0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache_hit_rate": round(self.hit_rate, 4),
            "output_tokens_per_request": None
            if self.output_per_request is None
            else round(self.output_per_request, 3),
            "output_fraction_of_max_tokens": DEFAULT_OUTPUT_FRACTION
            if self.output_per_request is None
            else None,
            "input_ratio": round(self.input_ratio, 4),
            "answered_batch_fraction": round(self.answered_batch, 4),
            "answered_sync_fraction": round(self.answered_sync, 4),
        }
