"""The Message Batches API's published limits, in one place for the builder and the emulator."""

from __future__ import annotations

import re

MAX_REQUESTS_PER_BATCH = 100_000
# "256 MB" of request body; taken as decimal megabytes, the stricter reading.
MAX_BATCH_BYTES = 256_000_000
# Every batch carries one marker request besides the shard's own (see ``core/requests/marker.py``): a shard
# leaves room for it in both limits.
MARKER_RESERVED_BYTES = 1024
MAX_REQUESTS_PER_SHARD = MAX_REQUESTS_PER_BATCH - 1
MAX_BYTES_PER_SHARD = MAX_BATCH_BYTES - MARKER_RESERVED_BYTES
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_CUSTOM_ID_LENGTH = 64
ANTHROPIC_VERSION = "2023-06-01"
BATCH_WINDOW_SECONDS = 24 * 3600
RESULTS_RETENTION_SECONDS = 29 * 24 * 3600

# The batch body is {"requests":[r1,r2,...]}: these bytes frame the comma-joined requests.
BODY_PREFIX = b'{"requests":['
BODY_SUFFIX = b"]}"


def batch_body_size(request_sizes_total: int, request_count: int) -> int:
    """Return the exact size of a create body holding ``request_count`` requests of the given total size."""
    separators = max(request_count - 1, 0)
    return len(BODY_PREFIX) + request_sizes_total + separators + len(BODY_SUFFIX)
