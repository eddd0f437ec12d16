"""The public keys access tokens are verified with, fetched from auth (``im.auth.jwks``).

A token signed with a key we do not know triggers one refetch (key rotation), rate
limited so garbage tokens cannot make us hammer auth.
"""

from __future__ import annotations

import trio

from libs import rpc
from libs.bus import Bus
from libs.errors import Unauthenticated
from libs.tokens import Claims, TokenExpired, Verifier

REFETCH_INTERVAL_S = 5.0


class KeyRing:
    def __init__(self, bus: Bus, timeout: float):
        self.bus = bus
        self.timeout = timeout
        self.verifier = Verifier({})
        self.revoked_sessions: set[str] = set()
        self._fetched_at = -1e9

    async def refresh(self) -> None:
        answer = await rpc.call(self.bus, "im.auth.jwks", {}, timeout=self.timeout)
        self.verifier.update({key["kid"]: key["public_key_pem"] for key in answer["keys"]})
        self._fetched_at = trio.current_time()

    async def verify(self, token: str) -> Claims:
        """The token's claims. Its key is looked up only when verifying fails (each look
        parses the token again, a good part of a handshake's CPU)."""
        try:
            claims = self.verifier.verify(token)
        except TokenExpired:
            raise
        except Unauthenticated:
            if not self._may_refetch(token):
                raise
            await self.refresh()
            claims = self.verifier.verify(token)
        if claims.session_id in self.revoked_sessions:
            raise Unauthenticated("session ended")
        return claims

    def _may_refetch(self, token: str) -> bool:
        """Signed by a key we do not know (a new one, rolled out), and not asked lately."""
        kid = Verifier.kid_of(token)
        return not self.verifier.knows(kid) and trio.current_time() - self._fetched_at > REFETCH_INTERVAL_S
