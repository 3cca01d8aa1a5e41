"""Tokens by the rate they are billed at, read from an API ``usage`` object."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenTotals:
    """Tokens by the rate they are billed at.

    :param input: uncached input tokens.
    :param output: output tokens.
    :param cache_write_5m: input tokens written to the cache with the 5-minute lifetime.
    :param cache_write_1h: input tokens written to the cache with the 1-hour lifetime.
    :param cache_read: input tokens read from the cache.
    """

    input: int = 0
    output: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @classmethod
    def from_usage(cls, usage: Mapping[str, Any] | None) -> TokenTotals:
        """Read an API ``usage`` object (as a dict); absent or null fields count as zero.

        Cache creation is split by lifetime when ``cache_creation`` gives the split; whatever it does
        not account for (all of it when the split is absent) is priced at the 5-minute rate.

        :param usage: the ``usage`` of a Message, or ``None``.
        """
        if not usage:
            return cls()
        created = _count(usage, "cache_creation_input_tokens")
        split = usage.get("cache_creation") or {}
        write_1h = _count(split, "ephemeral_1h_input_tokens")
        write_5m = _count(split, "ephemeral_5m_input_tokens")
        write_5m += max(created - write_5m - write_1h, 0)
        return cls(
            input=_count(usage, "input_tokens"),
            output=_count(usage, "output_tokens"),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=_count(usage, "cache_read_input_tokens"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenTotals:
        """Read what :meth:`to_dict` wrote; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: int(value or 0) for key, value in data.items() if key in names})

    def __add__(self, other: TokenTotals) -> TokenTotals:
        if not isinstance(other, TokenTotals):
            return NotImplemented
        # Written out, not looped over dataclasses.fields(): the ledger adds two per answer row.
        return TokenTotals(
            self.input + other.input,
            self.output + other.output,
            self.cache_write_5m + other.cache_write_5m,
            self.cache_write_1h + other.cache_write_1h,
            self.cache_read + other.cache_read,
        )

    @property
    def total_input(self) -> int:
        """All input tokens: uncached, cache writes and cache reads."""
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _count(mapping: Mapping[str, Any], key: str) -> int:
    value = mapping.get(key)
    return int(value) if value else 0
