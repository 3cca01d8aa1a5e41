"""What the emulator accepts at the front door: ``api_surface.json`` and the header checks that use it.

The data file lists the accepted ``anthropic-version`` values, the known ``anthropic-beta`` values, the
Messages params and content-block and tool types the API documents; everything else is refused the way
the API refuses it (400 ``invalid_request_error``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import orjson

from airflow_claude_batch.core.api.request_rules import beta_header_violation
from airflow_claude_batch.emulator.checks.errors import ApiError


@dataclass(frozen=True)
class ApiSurface:
    """The accepted values, read from ``api_surface.json``.

    :param versions: accepted ``anthropic-version`` values.
    :param betas: known ``anthropic-beta`` values.
    :param message_params: the Messages params (``POST /v1/messages`` and a batch request's params).
    :param sampling_params: ``temperature``, ``top_k``, ``top_p``: accepted only before
        ``sampling_removed_in`` and on models that allow them.
    :param sampling_removed_in: the ``anthropic-version`` from which sampling params are refused.
    :param count_tokens_params: the params ``POST /v1/messages/count_tokens`` takes.
    :param content_types: the content-block types a message may hold.
    :param server_tool_types: the ``type`` values of the API's own tools (``custom`` is a user tool).
    """

    versions: frozenset[str]
    betas: frozenset[str]
    message_params: frozenset[str]
    sampling_params: frozenset[str]
    sampling_removed_in: str
    count_tokens_params: frozenset[str]
    content_types: frozenset[str]
    server_tool_types: frozenset[str]

    @functools.cached_property
    def message_and_sampling_params(self) -> frozenset[str]:
        """The Messages params of a version that still accepts sampling params."""
        return self.message_params | self.sampling_params

    def sampling_allowed(self, version: str) -> bool:
        """Whether ``version`` still accepts ``temperature``, ``top_k`` and ``top_p``."""
        return version < self.sampling_removed_in


@functools.lru_cache(maxsize=1)
def api_surface() -> ApiSurface:
    """Return the accepted values (read once)."""
    data = orjson.loads(resources.files(__package__).joinpath("api_surface.json").read_bytes())
    return ApiSurface(
        versions=frozenset(data["anthropic_versions"]),
        betas=frozenset(data["anthropic_betas"]),
        message_params=frozenset(data["message_params"]),
        sampling_params=frozenset(data["sampling_params"]),
        sampling_removed_in=data["sampling_params_removed_in_version"],
        count_tokens_params=frozenset(data["count_tokens_params"]),
        content_types=frozenset(data["content_types"]),
        server_tool_types=frozenset(data["server_tool_types"]),
    )


def request_betas(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The ``anthropic-beta`` values of a call (comma-separated), in order."""
    return tuple(beta.strip() for beta in headers.get("anthropic-beta", "").split(",") if beta.strip())


def check_headers(headers: Mapping[str, str]) -> str:
    """Check ``anthropic-version`` and ``anthropic-beta`` as the API does; return the version.

    :raises ApiError: 400 for a missing or unknown version, or an unknown beta.
    """
    surface = api_surface()
    version = headers.get("anthropic-version", "").strip()
    if not version:
        raise ApiError("invalid_request_error", "anthropic-version: header is required")
    if version not in surface.versions:
        raise ApiError(
            "invalid_request_error",
            f"anthropic-version: {version!r} is not a valid version; use one of "
            f"{', '.join(sorted(surface.versions))}",
        )
    empty = beta_header_violation(headers.get("anthropic-beta"))
    if empty is not None:
        raise ApiError("invalid_request_error", empty.message)
    betas = request_betas(headers)
    unknown = [beta for beta in betas if beta not in surface.betas]
    if unknown:
        raise ApiError(
            "invalid_request_error",
            f"Unexpected value(s) `{', '.join(unknown)}` for the `anthropic-beta` header. Please consult "
            "our documentation at docs.claude.com or try again without the header.",
        )
    return version
