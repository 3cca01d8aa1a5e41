"""The package's exceptions: one root, split by whether money may have been spent.

``BeforeSubmitError``: the input or the configuration is wrong and nothing was sent to the API; fix the
input and run again. ``AfterSubmitError``: a batch exists (or may exist) and the job around it failed;
the message says how to recover without paying twice.
"""

from __future__ import annotations


class ClaudeBatchError(Exception):
    """Root of every error this package raises."""


class BeforeSubmitError(ClaudeBatchError):
    """Raised before any batch was created: nothing was spent."""


class InputError(BeforeSubmitError):
    """A record or a parameter is invalid; the message names the record and the fix."""

    def __init__(self, message: str, *, location: str | None = None, rule: str | None = None) -> None:
        self.location = location
        self.reason = message  # the message without the location
        self.rule = rule  # the rule a record broke (``rejected.jsonl`` names it), when one record is at fault
        super().__init__(f"{location}: {message}" if location else message)


class BudgetExceededError(BeforeSubmitError):
    """The run's cost estimate is above ``max_cost_usd``."""


class InputChangedError(BeforeSubmitError):
    """The input changed after a shard of the run was submitted; the message says what and the ways on."""


class ConnectionConfigError(BeforeSubmitError):
    """The Claude connection is missing, unreachable or rejected (wrong base URL or key)."""


class AccountError(ConnectionConfigError):
    """The API refused the call for the account, not the request: a spend limit reached, billing, an
    organization on hold, a key without permission. No retry helps until the account is fixed."""


class PacingTimeoutError(BeforeSubmitError):
    """A shard waited for the API's capacity (queue or rate limit) past its deadline; no batch was made."""


class ConditionalWritesUnsupportedError(BeforeSubmitError):
    """The run folder's storage cannot make a write exclusive (create-only or compare-and-swap)."""


class StorageError(ClaudeBatchError):
    """The run folder cannot be read or written (permission, missing bucket, full disk)."""


class WriteConflictError(StorageError):
    """A create-only or compare-and-swap write lost to another writer; read what that writer wrote."""


class AfterSubmitError(ClaudeBatchError):
    """Raised once a batch exists or may exist: the job around it failed."""


class SubmitRecoveryError(AfterSubmitError):
    """A create's outcome is unknown and the batch cannot be identified without help."""


class BatchNotFoundError(AfterSubmitError):
    """The API does not know the batch id."""


class ResultsUnavailableError(AfterSubmitError):
    """The batch's results cannot be downloaded (archived after 29 days, or not ended)."""


class ResultsStreamInterrupted(AfterSubmitError):
    """The results download stopped (or arrived damaged) before its end; downloading again may succeed."""


class ReconciliationError(AfterSubmitError):
    """Result lines do not account for every request of the shard."""


class BatchDeadlineError(AfterSubmitError):
    """The batch did not end before the wait's deadline."""
