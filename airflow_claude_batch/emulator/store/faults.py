"""Faults armed by tests through ``POST /_emulator/faults``; each is used up as it fires.

Spec (any subset of keys in one JSON object):

- ``{"fail_next": {"endpoint": E, "status": 429|500|529, "count": N, "retry_after": S}}``: the next
  ``N`` calls of endpoint ``E`` answer that error (a list of such objects arms several); optional
  ``error_type``, ``message`` and ``error_code`` (the body's ``error.details.error_code``) make the
  account's errors, e.g. ``{"status": 429, "error_code": "enforced_spend_limit_reached"}``;
- ``{"lose_next_create_response": N, "mode": "error"|"drop"}``: the next ``N`` creates make their
  batch, then answer 500 (``error``) or close the connection before the body (``drop``);
- ``{"cut_results_after_lines": N}``: the next results download stops after ``N`` lines;
- ``{"latency_ms": N}``: every API answer is delayed (0 turns it off);
- ``{"expire_next": {"fraction": F, "batches": N}}`` and ``{"error_next": {"fraction": F,
  "batches": N, "error_type": T}}``: the next ``N`` batches end with that fraction of requests
  expired / errored;
- ``{"processing_seconds": S}``: batches created from now on take ``S`` seconds to end (null: off);
- ``{"results_lag_seconds": S}``: while armed, a batch's results download answers 404
  (``not_found_error``) until ``S`` seconds after the batch ended, although its status already says
  ``ended`` with a ``results_url`` (results that lag the status; null or 0: off).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.emulator.checks.errors import ERROR_TYPE_OF_STATUS, STATUS_OF_ERROR_TYPE

ENDPOINTS = (
    "create",
    "retrieve",
    "list",
    "results",
    "cancel",
    "delete",
    "count_tokens",
    "messages",
    "models",
)
LOSE_MODES = ("error", "drop")


@dataclass(frozen=True)
class Failure:
    """An armed error answer.

    :param status: HTTP status.
    :param error_type: the API's error type for the body.
    :param retry_after: seconds for the ``retry-after`` header, or ``None``.
    :param message: the body's message, or ``None`` for the usual one of the error type.
    :param error_code: the body's ``error.details.error_code``, or ``None``.
    """

    status: int
    error_type: str
    retry_after: float | None
    message: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class BatchFaults:
    """Outcome faults for one new batch.

    :param expire_fraction: fraction of its requests that end ``expired``.
    :param error_fraction: fraction of its requests that end ``errored``.
    :param error_type: error type of those errored requests.
    :param processing_seconds: time the batch takes to end, or ``None`` for the configured speed.
    """

    expire_fraction: float = 0.0
    error_fraction: float = 0.0
    error_type: str = "overloaded_error"
    processing_seconds: float | None = None


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class FaultBoard:
    """The armed faults, safe to use from the event loop and worker threads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._failures: dict[str, list[Failure]] = {endpoint: [] for endpoint in ENDPOINTS}
            self._lost_creates: list[str] = []
            self._results_cut: int | None = None
            self._latency_seconds = 0.0
            self._expire_next: list[float] = []
            self._error_next: list[tuple[float, str]] = []
            self._processing_seconds: float | None = None
            self._results_lag_seconds = 0.0

    def arm(self, spec: dict[str, Any]) -> None:
        """Arm the faults in ``spec`` (see the module docstring); raise ``ValueError`` for a bad spec.

        The spec is checked whole before anything is armed, so a bad spec arms nothing.
        """
        if not isinstance(spec, dict):
            raise ValueError("the fault spec must be a JSON object")
        known = {
            "fail_next",
            "lose_next_create_response",
            "mode",
            "cut_results_after_lines",
            "latency_ms",
            "expire_next",
            "error_next",
            "processing_seconds",
            "results_lag_seconds",
        }
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known keys are {sorted(known)}")
        actions = self._parse(spec)
        with self._lock:
            for action in actions:
                action()

    def _parse(self, spec: dict[str, Any]) -> list[Any]:
        actions: list[Any] = []
        if "fail_next" in spec:
            items = spec["fail_next"] if isinstance(spec["fail_next"], list) else [spec["fail_next"]]
            for item in items:
                endpoint, failure, count = self._parse_failure(item)
                actions.append(lambda e=endpoint, f=failure, c=count: self._failures[e].extend([f] * c))
        if "lose_next_create_response" in spec:
            count = _count(spec["lose_next_create_response"], "lose_next_create_response")
            mode = spec.get("mode", "error")
            if mode not in LOSE_MODES:
                raise ValueError(f"mode must be one of {LOSE_MODES}, got {mode!r}")
            actions.append(lambda: self._lost_creates.extend([mode] * count))
        if "cut_results_after_lines" in spec:
            lines = _count(spec["cut_results_after_lines"], "cut_results_after_lines")
            actions.append(lambda: setattr(self, "_results_cut", lines))
        if "latency_ms" in spec:
            latency = _seconds(spec["latency_ms"], "latency_ms") / 1000
            actions.append(lambda: setattr(self, "_latency_seconds", latency))
        if "expire_next" in spec:
            fraction, batches = self._parse_batch_fault(spec["expire_next"], "expire_next")
            actions.append(lambda: self._expire_next.extend([fraction] * batches))
        if "error_next" in spec:
            fraction, batches = self._parse_batch_fault(spec["error_next"], "error_next")
            error_type = spec["error_next"].get("error_type", "overloaded_error")
            if error_type not in STATUS_OF_ERROR_TYPE:
                raise ValueError(
                    f"error_type must be one of {sorted(STATUS_OF_ERROR_TYPE)}, got {error_type!r}"
                )
            actions.append(lambda: self._error_next.extend([(fraction, error_type)] * batches))
        if "processing_seconds" in spec:
            value = spec["processing_seconds"]
            seconds = None if value is None else _seconds(value, "processing_seconds")
            actions.append(lambda: setattr(self, "_processing_seconds", seconds))
        if "results_lag_seconds" in spec:
            value = spec["results_lag_seconds"]
            lag = 0.0 if value is None else _seconds(value, "results_lag_seconds")
            actions.append(lambda: setattr(self, "_results_lag_seconds", lag))
        return actions

    @staticmethod
    def _parse_failure(item: Any) -> tuple[str, Failure, int]:
        if not isinstance(item, dict):
            raise ValueError("fail_next must be an object or a list of objects")
        endpoint = item.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise ValueError(f"fail_next.endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
        status = item.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"fail_next.status must be an HTTP error status, got {status!r}")
        error_type = item.get("error_type") or ERROR_TYPE_OF_STATUS.get(status, "api_error")
        retry_after = item.get("retry_after")
        retry_after = None if retry_after is None else _seconds(retry_after, "fail_next.retry_after")
        message, error_code = item.get("message"), item.get("error_code")
        for name, value in (("message", message), ("error_code", error_code)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"fail_next.{name} must be text, got {value!r}")
        failure = Failure(status, error_type, retry_after, message, error_code)
        return endpoint, failure, _count(item.get("count", 1), "count")

    @staticmethod
    def _parse_batch_fault(item: Any, name: str) -> tuple[float, int]:
        if not isinstance(item, dict):
            raise ValueError(f"{name} must be an object with 'fraction' and 'batches'")
        return _fraction(item.get("fraction", 1.0), f"{name}.fraction"), _count(
            item.get("batches", 1), f"{name}.batches"
        )

    def take_failure(self, endpoint: str) -> Failure | None:
        """Use up and return the next armed error for ``endpoint``, if any."""
        with self._lock:
            queue = self._failures[endpoint]
            return queue.pop(0) if queue else None

    def take_lost_create(self) -> str | None:
        """Use up and return the mode of the next lost create response, if one is armed."""
        with self._lock:
            return self._lost_creates.pop(0) if self._lost_creates else None

    def take_results_cut(self) -> int | None:
        """Use up and return the line count after which the next download stops, if armed."""
        with self._lock:
            lines, self._results_cut = self._results_cut, None
            return lines

    @property
    def results_lag_seconds(self) -> float:
        """Seconds after a batch ends during which its results download still answers 404."""
        return self._results_lag_seconds

    @property
    def latency_seconds(self) -> float:
        """The delay added to every API answer."""
        return self._latency_seconds

    def take_batch_faults(self) -> BatchFaults:
        """Use up and return the outcome faults for the next batch created."""
        with self._lock:
            expire = self._expire_next.pop(0) if self._expire_next else 0.0
            error, error_type = self._error_next.pop(0) if self._error_next else (0.0, "overloaded_error")
            return BatchFaults(expire, error, error_type, self._processing_seconds)
