"""The provider's configuration: the ``[claude_batch]`` section of Airflow's configuration.

Each option is read, in order, from the legacy environment variable (``CLAUDE_BATCH_<NAME>``, which
keeps working), then Airflow's configuration (``airflow.cfg``'s ``[claude_batch]`` section or
``AIRFLOW__CLAUDE_BATCH__<NAME>``), then the default. ``airflow config list`` shows the section with
the provider's defaults; ``airflow config get-value claude_batch poll_interval`` shows one value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_claude_batch.core.wait import PollBudget

SECTION = "claude_batch"


@dataclass(frozen=True)
class Option:
    """One option of the section.

    :param name: the option's name in ``[claude_batch]``.
    :param type: ``string``, ``float``, ``integer`` or ``boolean``, as Airflow's schema names them.
    :param default: the default, as text (empty: none).
    :param example: an example value, as text.
    :param description: what it does.
    """

    name: str
    type: str
    default: str
    example: str
    description: str

    @property
    def env_var(self) -> str:
        """The legacy environment variable, still honoured before the configuration."""
        return f"CLAUDE_BATCH_{self.name.upper()}"


OPTIONS: tuple[Option, ...] = (
    Option(
        "prices_file",
        "string",
        "",
        "s3://my-bucket/claude/prices.json",
        "A prices file (local path or object-storage URI) laid over the shipped prices: its models "
        "replace the shipped ones, the rest stay. An operator's prices_file= wins over it.",
    ),
    Option(
        "poll_interval",
        "float",
        "60",
        "300",
        "Default seconds between polls of a batch, for the wait sensor and the sample DAGs. Every poll "
        "counts against the organisation's batch requests-per-minute limit.",
    ),
    Option(
        "batch_rpm_limit",
        "float",
        "50",
        "1000",
        "The organisation's requests-per-minute limit for the Message Batches API (50 to 4,000 by tier; "
        "every batch endpoint counts against it). The triggerer's poller stays within "
        "poll_rpm_share of it.",
    ),
    Option(
        "poll_rpm_share",
        "float",
        "0.5",
        "0.25",
        "The share (above 0, at most 1) of batch_rpm_limit that polling from one triggerer process may "
        "use; the rest is left for creates, cancels and results downloads. With several triggerers or "
        "deployments on one organisation, split it between them.",
    ),
    Option(
        "results_lag_seconds",
        "float",
        "300",
        "900",
        "How long, in all, the results download waits (with backoff) for the results of a batch whose "
        "status already says ended but whose results are not found yet (HTTP 404); then it fails "
        "naming the batch and the task's retry downloads again.",
    ),
    Option(
        "batch_link",
        "string",
        "",
        "https://gateway.example.com/ui/batches/{batch_id}",
        "The submit and wait tasks' 'Claude batch' link, with {batch_id} and {base_url}. Empty: the "
        "Claude Console for the first-party API, and no link for a gateway or the emulator.",
    ),
    Option(
        "storage_conn_id",
        "string",
        "",
        "aws_default",
        "The sample DAGs' connection for their run folders (empty: local files). Their templates read "
        "Airflow's configuration: the environment variable is AIRFLOW__CLAUDE_BATCH__STORAGE_CONN_ID.",
    ),
    Option(
        "source_conn_id",
        "string",
        "",
        "aws_default",
        "The sample DAGs' connection for their input files (empty: local files). Their templates read "
        "Airflow's configuration: the environment variable is AIRFLOW__CLAUDE_BATCH__SOURCE_CONN_ID.",
    ),
    Option(
        "allow_unconditional_writes",
        "boolean",
        "False",
        "True",
        "Accept run folders on a storage without conditional writes (anything but local files and S3): "
        "each submit state is then checked just before it is written, so two submits of one shard at "
        "the same moment could both create a batch. Off: such a storage is refused at submit.",
    ),
)
_BY_NAME = {option.name: option for option in OPTIONS}


def provider_config() -> dict[str, Any]:
    """The section as ``get_provider_info()["config"]`` declares it to Airflow."""
    return {
        SECTION: {
            "description": "Claude Message Batches. Each option can also be set with its legacy "
            "environment variable CLAUDE_BATCH_<OPTION>, which wins over this section.",
            "options": {
                option.name: {
                    "description": option.description,
                    "version_added": "0.2.0",
                    "type": option.type,
                    "example": option.example,
                    "default": option.default,
                }
                for option in OPTIONS
            },
        }
    }


def get_setting(name: str) -> str | None:
    """Return an option's value as text, or ``None`` when it is empty everywhere.

    :param name: the option's name, e.g. ``"prices_file"``.
    """
    option = _BY_NAME[name]
    value = os.environ.get(option.env_var)
    if value is None:
        from airflow_claude_batch.compat import conf

        value = conf.get(SECTION, name, fallback=option.default)
    value = (value or "").strip()
    return value or None


def poll_interval() -> float:
    """The default seconds between polls (``[claude_batch] poll_interval``)."""
    value = get_setting("poll_interval") or _BY_NAME["poll_interval"].default
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"[{SECTION}] poll_interval (or CLAUDE_BATCH_POLL_INTERVAL) is {value!r}: give seconds, e.g. 60."
        ) from None


def poll_budget() -> PollBudget:
    """The polling rate budget (``[claude_batch] batch_rpm_limit`` and ``poll_rpm_share``)."""
    from airflow_claude_batch.core.wait import PollBudget

    values = {}
    for name in ("batch_rpm_limit", "poll_rpm_share"):
        value = get_setting(name) or _BY_NAME[name].default
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(
                f"[{SECTION}] {name} (or {_BY_NAME[name].env_var}) is {value!r}: give a number."
            ) from None
    return PollBudget(rpm_limit=values["batch_rpm_limit"], share=values["poll_rpm_share"])


def allow_unconditional_writes() -> bool:
    """Whether a storage without conditional writes is accepted (``allow_unconditional_writes``)."""
    value = (get_setting("allow_unconditional_writes") or "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(
            f"[{SECTION}] allow_unconditional_writes (or CLAUDE_BATCH_ALLOW_UNCONDITIONAL_WRITES) is "
            f"{value!r}: give True or False."
        )
    return value in ("true", "1", "yes")


def results_lag_seconds() -> float:
    """How long the results download waits for results that lag (``[claude_batch] results_lag_seconds``)."""
    value = get_setting("results_lag_seconds") or _BY_NAME["results_lag_seconds"].default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(
            f"[{SECTION}] results_lag_seconds (or CLAUDE_BATCH_RESULTS_LAG_SECONDS) is {value!r}: give "
            "seconds >= 0, e.g. 300."
        )
    return seconds


def prices_file() -> str | None:
    """The prices file laid over the shipped prices (``[claude_batch] prices_file``), if any."""
    return get_setting("prices_file")
