"""Identifiers shaped like the API's: a prefix, ``01`` and 22 base62 characters."""

from __future__ import annotations

import hashlib
import os

# ASCII order, so that ids built from increasing numbers sort in creation order.
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LENGTH = 22
# Maps each byte to a base62 character: random or hashed bytes become id characters in one call.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[byte % 62]) for byte in range(256))


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def sortable_id(prefix: str, millis: int, sequence: int) -> str:
    """Return an id that sorts after every id built from a smaller ``(millis, sequence)``.

    The random tail keeps ids unique across emulator restarts, so a stale id never names a new batch.
    """
    random_tail = int.from_bytes(os.urandom(8), "big")
    return f"{prefix}01{_base62(millis, 8)}{_base62(sequence, 4)}{_base62(random_tail, 10)}"


def random_id(prefix: str) -> str:
    """Return a fresh random id such as ``req_01...``."""
    return f"{prefix}01{os.urandom(_BODY_LENGTH).translate(_BYTE_TO_CHAR).decode()}"


def derived_id(prefix: str, *parts: str) -> str:
    """Return an id that is the same whenever ``parts`` are (a message id from batch and custom_id)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=_BODY_LENGTH).digest()
    return f"{prefix}01{digest.translate(_BYTE_TO_CHAR).decode()}"
