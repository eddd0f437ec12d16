"""Send de-duplication on (sender, client id): Redis is the fast cache, MySQL the truth.

A send claims its id in Redis first (a hit answers the original ack, or 5003 while the
first send is in progress), then, once numbered, durably in ``router_send_claims`` with its
seq, so a resend is recognised while Redis is down or after it lost its keys, and a claim
whose router died mid-send can be settled without storing the send twice (takeover.py).
MySQL away: Redis alone de-duplicates (the send is still acked). Both away: no dedup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pymysql
import trio

from libs import log
from libs.cache import CacheUnavailable
from libs.errors import Unavailable

from . import domain
from .claims import Ask, DurableClaims
from .storage import CachedClaim, Storage

logger = log.get("router.dedup")
IN_PROGRESS = "a send with this id is in progress; retry with the same id"


class Dedup:
    def __init__(self, storage: Storage, claims: DurableClaims | None, *, pending_s: int, ttl_s: int):
        self.storage = storage
        self.claims = claims  # None: Redis only (the measured baseline)
        self.pending_s = pending_s
        self.ttl_s = ttl_s

    def answer_cached(self, cached: CachedClaim) -> dict[str, Any] | None:
        """The original ack the Redis claim found (answered before a seq is taken), else None.
        Raises Unavailable (5003) while another send of the same id is in progress."""
        if not cached.available:
            logger.warning("router.dedup_cache_unavailable")
        if cached.previous and cached.previous.get("pending"):
            raise Unavailable(IN_PROGRESS)
        return cached.previous

    async def claim(self, ask: Ask) -> tuple[str, dict[str, Any] | None]:
        """The durable claim of a numbered send: (OURS, None), (ACKED, original ack) or
        (STALE, the dead claimant's ack, for takeover.py to settle); Redis claimed before.
        Raises Unavailable (5003) while another send of the same id is in progress."""
        verdict, found = await self._claim_durable(ask)
        if verdict == domain.ACKED and found is not None:
            await self.remember(ask, found)  # the cache had lost it
        return verdict, found

    async def _claim_durable(self, ask: Ask) -> tuple[str, dict[str, Any] | None]:
        if self.claims is None:
            return domain.OURS, None
        try:
            verdict, found = await self.claims.claim(ask)
        except (Unavailable, pymysql.Error) as exc:
            logger.warning("router.dedup_durable_unavailable", client_msg_id=ask.client_msg_id,
                           error=str(exc))
            return domain.OURS, None
        if verdict == domain.IN_PROGRESS:
            raise Unavailable(IN_PROGRESS)
        return verdict, found

    async def release(self, ask: Ask) -> None:
        """The send failed: free its id for a retry (where the claims are still ours)."""
        await self.release_cached(ask)
        if self.claims is not None:
            self.claims.release(ask)

    async def release_cached(self, ask: Ask) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(CacheUnavailable):
            await self.storage.release_send(ask.sender_id, ask.client_msg_id)

    def record_durable(self, ask: Ask, ack: dict[str, Any]) -> None:
        """Write-behind: the send's answer does not wait for this commit."""
        if self.claims is not None:
            self.claims.record(ask, ack)

    def remember_into(self, ask: Ask, ack: dict[str, Any]) -> Callable[[Any], None]:
        """:meth:`remember` as a pipeline step (it rides the fan-out's presence lookup)."""
        return self.storage.record_send_into(ask.sender_id, ask.client_msg_id, ack, self.ttl_s)

    async def remember(self, ask: Ask, ack: dict[str, Any]) -> None:
        """Cache the ack in Redis, best effort."""
        try:
            await self.storage.record_send(ask.sender_id, ask.client_msg_id, ack, self.ttl_s)
        except CacheUnavailable:
            logger.warning("router.dedup_not_cached", client_msg_id=ask.client_msg_id)

