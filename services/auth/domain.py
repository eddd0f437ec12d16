"""auth's rules without I/O: request validation and the session / refresh-family state machine.

A *session* is one row per issued refresh token. Rotating a refresh token revokes its row
and adds a successor row in the same *family* (one family per login). A revoked row whose
token is presented again means the token was stolen or replayed, so the whole family ends.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import InvalidRequest

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
USER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
DISPLAY_NAME_MAX = 64
TOKEN_MAX = 8192
CLIENT_IP_MAX = 64
MAX_USER_IDS = 10_000
REVOKED_SUBJECT = "im.evt.session.revoked.{user_id}"


# ---- field rules -----------------------------------------------------------------------
def _string(payload: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = payload.get(field)
    if value is None:
        if required:
            raise InvalidRequest(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    return value


def validate_username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise InvalidRequest("username", "must be 3 to 32 characters of A-Z a-z 0-9 _ . -")
    return value


def username_key(username: str) -> str:
    """The case-insensitive identity of a username (its column ``username_lc``)."""
    return username.lower()


def validate_password(value: str, *, field: str = "password") -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidRequest(field, f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


def validate_display_name(value: str | None, default: str) -> str:
    if value is None:
        return default
    name = value.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise InvalidRequest("display_name", f"must be 1 to {DISPLAY_NAME_MAX} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidRequest("display_name", "must not contain control characters")
    return name


def validate_device_id(value: str | None) -> str | None:
    if value is not None and not DEVICE_ID_RE.fullmatch(value):
        raise InvalidRequest("device_id", "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    return value


def _identifier(payload: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = _string(payload, field, required=required)
    if value is not None and not USER_ID_RE.fullmatch(value):
        raise InvalidRequest(field, "must be 1 to 128 characters of A-Z a-z 0-9 _ -")
    return value


def validate_user_ids(value: Any) -> list[str]:
    """Distinct ids in first-seen order."""
    if value is None:
        raise InvalidRequest("user_ids", "is required")
    if not isinstance(value, list):
        raise InvalidRequest("user_ids", "must be an array of user ids")
    if len(value) > MAX_USER_IDS:
        raise InvalidRequest("user_ids", f"must hold at most {MAX_USER_IDS} ids")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not USER_ID_RE.fullmatch(item):
            raise InvalidRequest(f"user_ids[{index}]", "must be a user id")
    return list(dict.fromkeys(value))


# ---- requests --------------------------------------------------------------------------
@dataclass(frozen=True)
class RegisterRequest:
    username: str
    password: str
    display_name: str
    client_ip: str | None = None  # rate-limit key of the caller's address


@dataclass(frozen=True)
class LoginRequest:
    username_key: str | None  # None: not a possible username, so certainly unknown
    password: str
    device_id: str | None
    client_ip: str | None = None


def parse_register(payload: dict[str, Any]) -> RegisterRequest:
    username = validate_username(_string(payload, "username") or "")
    password = validate_password(_string(payload, "password") or "")
    display_name = validate_display_name(_string(payload, "display_name", required=False), username)
    return RegisterRequest(username, password, display_name, parse_client_ip(payload))


def parse_client_ip(payload: dict[str, Any]) -> str | None:
    """The caller's address as a rate-limit key: one key per IPv4 address or IPv6 /64.

    A client usually holds a whole IPv6 /64, so counting single v6 addresses would let it
    rotate past any limit. A value that is no IP address (a proxy's label) is used as is.
    """
    value = _string(payload, "client_ip", required=False)
    if not value:
        return None
    if len(value) > CLIENT_IP_MAX:
        raise InvalidRequest("client_ip", f"must be at most {CLIENT_IP_MAX} characters")
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return value.lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return f"{ipaddress.IPv6Network((address, 64), strict=False).network_address}/64"
    return str(address)


def parse_login(payload: dict[str, Any]) -> LoginRequest:
    username = _string(payload, "username") or ""
    if not username:
        raise InvalidRequest("username", "is required")
    password = _string(payload, "password") or ""
    if not 1 <= len(password) <= PASSWORD_MAX:
        raise InvalidRequest("password", f"must be 1 to {PASSWORD_MAX} characters")
    device_id = validate_device_id(_string(payload, "device_id", required=False))
    key = username_key(username) if USERNAME_RE.fullmatch(username) else None
    return LoginRequest(key, password, device_id, parse_client_ip(payload))


def parse_refresh_token(payload: dict[str, Any]) -> str:
    token = _string(payload, "refresh_token") or ""
    if not 1 <= len(token) <= TOKEN_MAX:
        raise InvalidRequest("refresh_token", f"must be 1 to {TOKEN_MAX} characters")
    return token


def parse_session_id(payload: dict[str, Any], *, required: bool = True) -> str | None:
    return _identifier(payload, "session_id", required=required)


def parse_user_id(payload: dict[str, Any], *, required: bool = True) -> str | None:
    return _identifier(payload, "user_id", required=required)


def parse_device_id(payload: dict[str, Any], *, required: bool = True) -> str | None:
    return validate_device_id(_string(payload, "device_id", required=required))


def parse_access_token(payload: dict[str, Any]) -> str | None:
    token = _string(payload, "token", required=False)
    if token is not None and not 1 <= len(token) <= TOKEN_MAX:
        raise InvalidRequest("token", f"must be 1 to {TOKEN_MAX} characters")
    return token


def hash_refresh_token(token: str) -> str:
    """Only this digest is stored: a database leak does not leak usable refresh tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


# ---- sessions and families -------------------------------------------------------------
class SessionState(enum.Enum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Session:
    session_id: str
    user_id: str
    device_id: str
    family_id: str
    created_ts: int
    last_seen_ts: int
    expires_ts: int
    revoked_ts: int | None = None


def state_of(session: Session, now: int) -> SessionState:
    if session.revoked_ts is not None:
        return SessionState.REVOKED
    return SessionState.LIVE if session.expires_ts > now else SessionState.EXPIRED


def is_live(session: Session, now: int) -> bool:
    return state_of(session, now) is SessionState.LIVE


def new_session(user_id: str, device_id: str, session_id: str, family_id: str, now: int,
                ttl_ms: int) -> Session:
    """The first session of a new family (a login)."""
    return Session(session_id, user_id, device_id, family_id, now, now, now + ttl_ms)


def revoke(session: Session, now: int) -> Session:
    return session if session.revoked_ts is not None else replace(session, revoked_ts=now)


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"    # a revoked token came back: end the family
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RefreshPlan:
    outcome: RefreshOutcome
    successor: Session | None = None
    revoke_family: str | None = None


def plan_refresh(current: Session | None, now: int, new_session_id: str,
                 ttl_ms: int) -> RefreshPlan:
    """What presenting the refresh token of ``current`` leads to."""
    if current is None:
        return RefreshPlan(RefreshOutcome.UNKNOWN)
    state = state_of(current, now)
    if state is SessionState.REVOKED:
        return RefreshPlan(RefreshOutcome.REUSED, revoke_family=current.family_id)
    if state is SessionState.EXPIRED:
        return RefreshPlan(RefreshOutcome.EXPIRED)
    # The successor keeps the login time (created_ts) so a device's session shows when it
    # logged in; its lifetime slides from now.
    successor = replace(current, session_id=new_session_id, last_seen_ts=now,
                        expires_ts=now + ttl_ms, revoked_ts=None)
    return RefreshPlan(RefreshOutcome.ROTATED, successor=successor)


def session_view(session: Session, current_session_id: str | None,
                 current_device_id: str | None) -> dict[str, Any]:
    current = (session.session_id == current_session_id if current_session_id
               else session.device_id == current_device_id)
    return {"device_id": session.device_id, "created_ts": session.created_ts,
            "last_seen_ts": session.last_seen_ts, "current": current}


def revoked_event(session: Session, reason: str, now: int) -> tuple[str, dict[str, Any]]:
    """(subject, payload) of the core event that makes gateways close the device's sockets."""
    payload = {"user_id": session.user_id, "session_id": session.session_id,
               "device_id": session.device_id, "reason": reason, "ts": now}
    return REVOKED_SUBJECT.format(user_id=session.user_id), payload


# ---- login lockout and registration limits ------------------------------------------------
@dataclass(frozen=True)
class LockoutPolicy:
    """``free_attempts`` failures within ``window_ms`` are free; from then on each counted
    failure locks for ``base_ms``, doubling per further failure, capped at ``max_ms``."""

    free_attempts: int
    window_ms: int
    base_ms: int
    max_ms: int


@dataclass(frozen=True)
class Attempts:
    """The recent login failures of one username or one client address."""

    failures: int = 0
    last_ts: int = 0       # when the last failure was counted
    locked_until: int = 0  # attempts before this time are refused


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after_ms: int = 0
    records: tuple[Attempts, ...] = ()  # what to store when allowed
    locked_by: int = -1  # when refused: the index of the record with the longest lock


def expiry_ts(record: Attempts, policy: LockoutPolicy) -> int:
    """The record is forgotten after a whole quiet window past its last failure and lock.

    Measured from the end of the lock, so a lock longer than the window still grows."""
    return max(record.last_ts, record.locked_until) + policy.window_ms


def current(record: Attempts, now: int, policy: LockoutPolicy) -> Attempts:
    return Attempts() if now >= expiry_ts(record, policy) else record


def lock_ms(failures: int, policy: LockoutPolicy) -> int:
    """0 below the threshold, then base, 2 x base, 4 x base ... up to max."""
    extra = failures - policy.free_attempts
    if extra < 0:
        return 0
    return min(policy.max_ms, policy.base_ms << min(extra, 64))


def count_failure(record: Attempts, now: int, policy: LockoutPolicy) -> Attempts:
    record = current(record, now, policy)
    failures = record.failures + 1
    lock = lock_ms(failures, policy)
    return Attempts(failures, now, max(record.locked_until, now + lock) if lock
                    else record.locked_until)


def forgive(record: Attempts, now: int, policy: LockoutPolicy) -> Attempts:
    """Take back one up-front count (the attempt succeeded or failed for another reason).

    A lock already set stays: it may be owed to other callers' failures."""
    record = current(record, now, policy)
    return replace(record, failures=max(0, record.failures - 1))


def admit_attempt(records: Sequence[Attempts], now: int,
                  policies: Sequence[LockoutPolicy]) -> Admission:
    """Refuse while any record is locked; otherwise let the attempt in and count it.

    The attempt counts as a failure *before* the password is checked (a success clears or
    forgives it), so a burst of concurrent guesses cannot all pass before one is stored.
    """
    fresh = [current(r, now, p) for r, p in zip(records, policies, strict=True)]
    waits = [r.locked_until - now for r in fresh]
    if waits and max(waits) > 0:
        longest = max(waits)
        return Admission(False, longest, locked_by=waits.index(longest))
    return Admission(True, 0, tuple(count_failure(r, now, p)
                                    for r, p in zip(fresh, policies, strict=True)))


def registration_wait_ms(count: int, window_left_ms: int, limit: int) -> int:
    """0 if the ``count``-th registration from one address in this window is allowed, else
    how long until the window ends (at least 1 ms)."""
    return 0 if count <= limit else max(1, window_left_ms)
