"""Which gateway a user should connect to: rendezvous (highest random weight) hashing over
the gateways that announced themselves recently.

Adding or removing a gateway moves only the users whose top choice it is (about 1/n of
them), so a scale-out or a crash does not reshuffle everyone's connections.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(user_id: str, gateway_id: str) -> int:
    digest = hashlib.blake2b(f"{gateway_id}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def pick(user_id: str, gateways: Iterable[str]) -> str | None:
    """The gateway with the highest weight for this user (None when there are none)."""
    return max(gateways, key=lambda gw: (weight(user_id, gw), gw), default=None)


class Directory:
    """Gateways seen announcing within ``ttl_s`` (their WebSocket URLs by id)."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._seen: dict[str, tuple[str, float]] = {}

    def saw(self, gateway_id: str, ws_url: str, now: float) -> None:
        self._seen[gateway_id] = (ws_url, now)

    def live(self, now: float) -> dict[str, str]:
        return {gw: url for gw, (url, at) in self._seen.items() if now - at <= self.ttl_s}

    def url_for(self, user_id: str, now: float, fallback: str) -> str:
        live = self.live(now)
        chosen = pick(user_id, live)
        return live[chosen] if chosen else fallback
