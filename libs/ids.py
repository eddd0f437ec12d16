"""Opaque identifiers: time-ordered, URL-safe, 26 characters (ULID layout)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, Crockford base32: sorts by creation."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def now_ms() -> int:
    return int(time.time() * 1000)
