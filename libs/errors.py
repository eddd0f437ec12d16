"""The error every natterjack failure visible to a client derives from, and the stable codes.

Codes are the contract's (``proto/README.md``): the same numbers travel in WebSocket
``error`` frames, HTTP error bodies and NATS error replies.
"""

from __future__ import annotations

from typing import Any

MALFORMED = 4000
UNKNOWN_CHAT = 4001
UNKNOWN_TYPE = 4002
FORBIDDEN = 4003
NOT_FOUND = 4004
CONFLICT = 4009
UNAUTHENTICATED = 4010
TOO_LARGE = 4013
SCHEMA_FAILED = 4022
RATE_LIMITED = 4029
INTERNAL = 5000
UNAVAILABLE = 5003

HTTP_STATUS = {
    MALFORMED: 400,
    UNKNOWN_CHAT: 404,
    UNKNOWN_TYPE: 400,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    CONFLICT: 409,
    UNAUTHENTICATED: 401,
    TOO_LARGE: 413,
    SCHEMA_FAILED: 422,
    RATE_LIMITED: 429,
    INTERNAL: 500,
    UNAVAILABLE: 503,
}


class NatterjackError(Exception):
    """Root of every error that is reported to a caller with a stable code.

    Raised by any layer; the edges (WebSocket, HTTP, NATS replies) turn it into the
    contract's error shape with :meth:`to_body`.
    """

    code: int = INTERNAL

    def __init__(self, message: str, *, code: int | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> NatterjackError:
        """Rebuild an error carried in a reply (``{"code", "message", "details"?}``)."""
        code = body.get("code", INTERNAL)
        return cls(str(body.get("message", "error")), code=code if isinstance(code, int) else INTERNAL,
                   details=body.get("details"))

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class Malformed(NatterjackError):
    """Raised when a request or frame is not valid JSON or lacks/misuses a field."""

    code = MALFORMED


class Unavailable(NatterjackError):
    """Raised when a dependency (NATS, MySQL, Redis, another service) cannot answer in time."""

    code = UNAVAILABLE


class Forbidden(NatterjackError):
    """Raised when the caller is authenticated but not allowed to do this."""

    code = FORBIDDEN


class NotFound(NatterjackError):
    """Raised when the named thing (message, user, chat) does not exist."""

    code = NOT_FOUND


class Unauthenticated(NatterjackError):
    """Raised on a bad, expired or revoked token, or bad credentials."""

    code = UNAUTHENTICATED
