"""The marker request: the proof that a batch holds one shard's requests, sent by one create call.

The API keeps no metadata on a batch and lists no requests before it ends, so a batch whose create
answer was lost cannot be told apart from another run's batch of the same size by looking at it. Each
create therefore sends one extra request, the marker, whose ``custom_id`` is a digest of who sent it:
the shard's run folder (DAG, run, pipeline), round and index, the shard file's content and the create
attempt. Once a batch has ended its results list every custom_id, so a batch holds this shard's requests,
sent by this attempt, exactly when its results hold this marker.

The marker asks for one output token of the shard's own model: about 20 tokens a batch, a fraction of
a cent. Its result is kept out of the shard's outcome files and its usage is accounted for on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from airflow_claude_batch.core.api.encoding import encode_json
from airflow_claude_batch.exceptions import AfterSubmitError

#: Every marker's custom_id starts with this; records may not use it.
MARKER_PREFIX = "acb-marker-"
_DIGEST_CHARS = 64 - len(MARKER_PREFIX)
MARKER_PROMPT = "airflow-claude-batch marker: reply with one word."


def marker_id(shard_uri: str, content_sha256: str, intent_id: str) -> str:
    """Return the marker custom_id of one create attempt of one shard.

    :param shard_uri: the shard's requests file (names storage, DAG, run, pipeline, round and shard).
    :param content_sha256: the digest of the shard file's bytes.
    :param intent_id: the create attempt's id, recorded in the state file before the call.
    """
    digest = hashlib.sha256("\n".join((shard_uri, content_sha256, intent_id)).encode("utf-8"))
    return MARKER_PREFIX + digest.hexdigest()[:_DIGEST_CHARS]


def is_marker(custom_id: object) -> bool:
    """Return whether ``custom_id`` is a marker's (the fanout leaves those lines out of the outcomes)."""
    return isinstance(custom_id, str) and custom_id.startswith(MARKER_PREFIX)


def marker_line(custom_id: str, model: str) -> bytes:
    """Return the marker request as one encoded line, the way shard lines are stored and sent."""
    params = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": MARKER_PROMPT}]}
    return encode_json({"custom_id": custom_id, "params": params})


class MarkerWatch:
    """Takes a batch's marker line out of its results stream and proves the batch is the shard's.

    :param expected: the marker the shard's batch must hold (``None`` for a batch made without one).
    """

    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self.line: Mapping[str, Any] | None = None

    def take(self, line: Mapping[str, Any]) -> bool:
        """Return ``True`` (and keep it) when ``line`` is the expected marker's result."""
        if self.expected is None or line.get("custom_id") != self.expected:
            return False
        self.line = line
        return True

    def check(self, where: str, state_file: object = None) -> None:
        """Raise when the stream ended without the expected marker: the batch is not the shard's.

        :param state_file: the shard's state file, which names the batch.
        """
        if self.expected is not None and self.line is None:
            named = f" ({state_file})" if state_file is not None else ""
            raise AfterSubmitError(
                f"{where}: the results do not hold the shard's marker request {self.expected}, so this "
                "batch was not made from this shard and nothing was written. Check the batch id in the "
                f"shard's state file{named}; delete that file and clear the "
                "submit task to send the shard again"
            )
