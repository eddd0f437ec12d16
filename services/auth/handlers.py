"""The ``im.auth.*`` request handlers: validate with domain, read and write through storage.

Every handler takes the decoded request object and returns the ``ok`` payload or raises an
:mod:`errors` exception (turned into the error reply by libs.rpc).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import trio

from libs import log, tokens
from libs.bus import Bus
from libs.ids import new_id, now_ms
from libs.rpc import Handler

from . import domain
from .domain import RefreshOutcome, Session
from .errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    SessionNotFound,
    SessionNotLive,
    UsernameTaken,
)
from .keys import KeySet
from .passwords import Passwords
from .ratelimit import RateLimits
from .storage import Storage

logger = log.get("auth")


class AuthHandlers:
    def __init__(self, storage: Storage, passwords: Passwords, keys: KeySet, bus: Bus,
                 limits: RateLimits, *, access_ttl_s: int, refresh_ttl_s: int):
        self.storage = storage
        self.limits = limits
        self.passwords = passwords
        self.keys = keys
        self.bus = bus
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.verifier = keys.verifier()
        self._jwks = {"keys": keys.jwks()}

    def routes(self) -> dict[str, Handler]:
        return {
            "im.auth.register": self.register,
            "im.auth.login": self.login,
            "im.auth.refresh": self.refresh,
            "im.auth.logout": self.logout,
            "im.auth.verify": self.verify,
            "im.auth.jwks": self.jwks,
            "im.auth.users.exist": self.users_exist,
            "im.auth.sessions.list": self.sessions_list,
            "im.auth.sessions.revoke": self.sessions_revoke,
            "im.auth.devices": self.devices,
        }

    # ---- accounts ----------------------------------------------------------------------
    async def register(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = domain.parse_register(payload)
        await self.limits.admit_registration(request.client_ip)
        # Checked before hashing so a taken name costs no argon2 work; the UNIQUE index
        # still decides a race between two registrations.
        if await self.storage.username_taken(domain.username_key(request.username)):
            raise UsernameTaken()
        password_hash = await self.passwords.hash(request.password)
        user_id = new_id()
        await self.storage.create_user(user_id, request.username, request.display_name,
                                       password_hash, now_ms())
        logger.info("auth.registered", user_id=user_id)
        return {"user_id": user_id}

    async def login(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = domain.parse_login(payload)
        key, client_ip = request.username_key, request.client_ip
        await self.limits.admit_login(key, client_ip)  # counts this attempt as a failure
        try:
            user_id = await self._check_credentials(request)
        except InvalidCredentials:
            raise
        except Exception:  # not the caller's fault (e.g. MySQL down): take the count back
            with trio.CancelScope(shield=True):
                await self.limits.forgive_login(key, client_ip)
            raise
        await self.limits.login_succeeded(key, client_ip)
        now = now_ms()
        session = domain.new_session(user_id, request.device_id or new_id(), new_id(), new_id(),
                                     now, self.refresh_ttl_s * 1000)
        refresh_token = secrets.token_urlsafe(32)
        refresh_hash = domain.hash_refresh_token(refresh_token)
        replaced = await self.storage.open_session(session, refresh_hash)
        await self._announce(replaced, "replaced", now)
        logger.info("auth.logged_in", user_id=user_id, device_id=session.device_id,
                    session_id=session.session_id)
        return self._grant(session, refresh_token, now)

    async def _check_credentials(self, request: domain.LoginRequest) -> str:
        """The user id if the password matches, else InvalidCredentials."""
        key = request.username_key
        found = await self.storage.find_login(key) if key else None
        # Unknown users are checked against a dummy hash: both failures take as long.
        matches = await self.passwords.verify(found[1] if found else None, request.password)
        if found is None or not matches:
            raise InvalidCredentials()
        user_id, stored_hash = found
        await self._upgrade_hash(user_id, stored_hash, request.password)
        return user_id

    async def _upgrade_hash(self, user_id: str, stored_hash: str, password: str) -> None:
        """Re-hash with the current cost settings once they changed (needs the plain password)."""
        if self.passwords.needs_rehash(stored_hash):
            await self.storage.set_password_hash(user_id, await self.passwords.hash(password))

    def _grant(self, session: Session, refresh_token: str, now: int) -> dict[str, Any]:
        issued_at = now // 1000
        claims = tokens.Claims(session.user_id, session.device_id, session.session_id,
                               issued_at + self.access_ttl_s)
        return {"user_id": session.user_id, "device_id": session.device_id,
                "session_id": session.session_id, "access_token": self.keys.sign(claims, issued_at),
                "refresh_token": refresh_token, "expires_in": self.access_ttl_s,
                "refresh_expires_in": max(1, (session.expires_ts - now) // 1000)}

    # ---- sessions ----------------------------------------------------------------------
    async def refresh(self, payload: dict[str, Any]) -> dict[str, Any]:
        presented = domain.parse_refresh_token(payload)
        now, refresh_token = now_ms(), secrets.token_urlsafe(32)
        result = await self.storage.refresh(
            domain.hash_refresh_token(presented), now, new_id(),
            domain.hash_refresh_token(refresh_token), self.refresh_ttl_s * 1000)
        plan = result.plan
        if plan.outcome is RefreshOutcome.ROTATED and plan.successor is not None:
            return self._grant(plan.successor, refresh_token, now)
        if plan.outcome is RefreshOutcome.REUSED:
            logger.warning("auth.refresh_reused", family_id=plan.revoke_family,
                           ended=[s.session_id for s in result.ended])
            await self._announce(result.ended, "refresh_reuse", now)
        raise InvalidRefreshToken()

    async def logout(self, payload: dict[str, Any]) -> dict[str, Any]:
        session_id = domain.parse_session_id(payload) or ""
        user_id = domain.parse_user_id(payload, required=False)
        now = now_ms()
        ended = await self.storage.revoke_session(session_id, user_id, now)
        # Idempotent: logging out an already ended session is not an error.
        await self._announce([ended] if ended else [], "logout", now)
        return {}

    async def verify(self, payload: dict[str, Any]) -> dict[str, Any]:
        token = domain.parse_access_token(payload)
        session_id = domain.parse_session_id(payload, required=token is None)
        # A bad or expired token is a 4010 from libs.tokens (Unauthenticated/TokenExpired).
        claims = self.verifier.verify(token) if token else None
        if claims is not None:
            if session_id is not None and session_id != claims.session_id:
                raise SessionNotLive("token does not belong to that session")
            session_id = claims.session_id
        session = await self.storage.live_session(session_id or "", now_ms())
        if session is None:
            raise SessionNotLive()
        reply: dict[str, Any] = {"live": True, "user_id": session.user_id,
                                 "device_id": session.device_id, "session_id": session.session_id}
        if claims is not None:
            reply["expires_ts"] = claims.expires_at * 1000
        return reply

    async def sessions_list(self, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = domain.parse_user_id(payload) or ""
        session_id = domain.parse_session_id(payload, required=False)
        device_id = domain.parse_device_id(payload, required=False)
        sessions = await self.storage.live_sessions(user_id, now_ms())
        return {"sessions": [domain.session_view(s, session_id, device_id) for s in sessions]}

    async def sessions_revoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = domain.parse_user_id(payload) or ""
        device_id = domain.parse_device_id(payload) or ""
        now = now_ms()
        ended = await self.storage.revoke_device(user_id, device_id, now)
        if not ended:
            raise SessionNotFound()
        await self._announce(ended, "revoked", now)
        return {}

    async def _announce(self, ended: list[Session], reason: str, now: int) -> None:
        """Tell every gateway (core event) so it closes the sockets of ended sessions."""
        for session in ended:
            subject, event = domain.revoked_event(session, reason, now)
            await self.bus.publish(subject, orjson.dumps(event))

    # ---- lookups -----------------------------------------------------------------------
    async def jwks(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._jwks

    async def devices(self, payload: dict[str, Any]) -> dict[str, Any]:
        """{user_ids} -> {devices: {user_id: [device_id, ...]}}: devices with a live session."""
        user_ids = domain.validate_user_ids(payload.get("user_ids"))
        return {"devices": await self.storage.live_devices(user_ids, now_ms())}

    async def users_exist(self, payload: dict[str, Any]) -> dict[str, Any]:
        user_ids = domain.validate_user_ids(payload.get("user_ids"))
        existing = await self.storage.existing_users(user_ids)
        return {"missing": [u for u in user_ids if u not in existing],
                "existing": [u for u in user_ids if u in existing]}
