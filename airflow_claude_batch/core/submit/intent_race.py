"""Two submits of one shard at once: what the one that lost the exclusive write of the state does.

The shard's state file is written exclusively (:mod:`~airflow_claude_batch.core.run.conditional_writes`),
so a write fails with ``WriteConflictError`` when another submit of the same shard wrote first (a zombie
task and its retry, two schedulers, two deployments on one bucket). The loser of the intent's write
waits for the winner's record (:func:`wait_for_peer`); a later write that lost to a small change by the
other (a batch noted as not ours) is made again over it (:func:`record_change`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from airflow_claude_batch.core.submit.state import INTENT, SUBMITTED, SubmitState
from airflow_claude_batch.exceptions import AfterSubmitError, WriteConflictError

log = logging.getLogger(__name__)
#: Races for the intent one submit may lose in a row before it leaves the shard to the task's retry.
MAX_RACES = 3


def record_change(
    store: Any, shard_uri: str, intent: SubmitState, change: Callable[[SubmitState], SubmitState]
) -> SubmitState:
    """Write ``change(intent)`` over the version last seen; return what was recorded.

    When another submit changed the state since (noting a batch that is not ours, or adopting this
    attempt's batch), the change is made again over theirs while the state is still this attempt's
    intent; the same batch recorded already is kept. Anything else is left to the task's retry, which
    reads the state afresh.

    :param store: the shard's state store.
    :param shard_uri: the shard, for the message.
    :param intent: the state this attempt last wrote or read.
    :param change: makes the state to record from the one recorded.
    :raises AfterSubmitError: another submit recorded something else.
    """
    state = change(intent)
    for _ in range(MAX_RACES):
        try:
            store.write(state)
            return state
        except WriteConflictError:
            recorded = store.read()
        if recorded is not None and recorded.intent_id == intent.intent_id and recorded.status == INTENT:
            state = change(recorded)
            continue
        if recorded is not None and recorded.status == SUBMITTED and recorded.batch_id == state.batch_id:
            return recorded
        break
    raise AfterSubmitError(
        f"the state of shard {shard_uri} ({store.location}) was changed by another submit of it while this "
        f"one recorded {state.status!r}; the task's retry goes on from what that submit recorded"
    )


def merged(recorded: tuple[str, ...], found: tuple[str, ...]) -> tuple[str, ...]:
    """The ids of both, each once, in order."""
    return tuple(dict.fromkeys((*recorded, *found)))


def noting_not_ours(not_ours: tuple[str, ...]) -> Callable[[SubmitState], SubmitState]:
    """The change that adds ``not_ours`` to a state's batches set aside."""
    return lambda state: dataclasses.replace(state, not_ours=merged(state.not_ours, not_ours))


def wait_for_peer(store: Any, claims: Any, shard_uri: str, timing: Any) -> SubmitState | None:
    """Wait while another submit's intent is there, at most ``timing.peer_wait``; return the state then.

    Its create may be in flight: its record (``submitted``, with the batch and its claim) usually
    follows within seconds. After the wait, an intent still there is followed up like any other
    (candidates proven by claim or marker, nothing created before it settles).
    """
    log.warning("Another submit of shard %s wrote its intent first; waiting for its record", shard_uri)
    deadline = timing.now() + timing.peer_wait
    delay = 0.5
    state = store.read()
    while state is not None and state.status == INTENT and timing.now() < deadline:
        timing.sleep(delay)
        delay = min(delay * 2, 5.0)
        state = store.read()
    if state is not None and state.status == SUBMITTED:
        claim = claims.read(str(state.batch_id))
        proof = (
            "its claim names this shard"
            if claim is not None and claim.owner == store.location
            else "no claim"
        )
        log.info("The other submit of shard %s recorded batch %s (%s)", shard_uri, state.batch_id, proof)
    return state
