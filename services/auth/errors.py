"""Errors auth reports to its callers; every one carries a stable code from libs.errors."""

from __future__ import annotations

from libs.errors import (
    CONFLICT,
    RATE_LIMITED,
    Malformed,
    NatterjackError,
    NotFound,
    Unauthenticated,
)


class AuthError(NatterjackError):
    """Root of every error raised by the auth service's own code."""


class InvalidRequest(AuthError, Malformed):
    """Raised when a request payload lacks a field or a field breaks its rule (4000).

    ``details.field`` names the offending field.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}", details={"field": field})
        self.field = field


class UsernameTaken(AuthError):
    """Raised by register when the username exists in any letter case (4009)."""

    code = CONFLICT

    def __init__(self) -> None:
        super().__init__("username taken")


class InvalidCredentials(AuthError, Unauthenticated):
    """Raised by login for an unknown user or a wrong password, alike on purpose (4010)."""

    def __init__(self) -> None:
        super().__init__("invalid credentials")


class InvalidRefreshToken(AuthError, Unauthenticated):
    """Raised by refresh for an unknown, expired, revoked or already-rotated token (4010)."""

    def __init__(self) -> None:
        super().__init__("invalid refresh token")


class SessionNotLive(AuthError, Unauthenticated):
    """Raised by verify for an unknown, revoked or expired session, or a bad token (4010)."""

    def __init__(self, message: str = "session is not live"):
        super().__init__(message)


class SessionNotFound(AuthError, NotFound):
    """Raised by sessions.revoke when the user has no live session on that device (4004)."""

    def __init__(self) -> None:
        super().__init__("no live session for that device")


class RateLimited(AuthError):
    """Raised by login while the username or client address is locked out, and by register
    when the address made too many accounts this hour (4029).

    ``details.retry_after_ms`` says when to try again; ``details.scope`` which limit hit
    (``username``, ``client_ip`` or ``register``).
    """

    code = RATE_LIMITED

    def __init__(self, retry_after_ms: int, scope: str):
        super().__init__("too many attempts, retry later",
                         details={"retry_after_ms": int(retry_after_ms), "scope": scope})
