"""One root error with the contract's stable code, and a few subclasses to branch on."""

from __future__ import annotations

from typing import Any

# The contract's stable codes (the same numbers in WebSocket error frames and HTTP bodies).
MALFORMED = 4000
UNKNOWN_CHAT = 4001
UNKNOWN_TYPE = 4002
FORBIDDEN = 4003
NOT_FOUND = 4004
CONFLICT = 4009
UNAUTHENTICATED = 4010
TOO_LARGE = 4013
SCHEMA_MISMATCH = 4022
RATE_LIMITED = 4029
INTERNAL = 5000
UNAVAILABLE = 5003

# WebSocket close codes of the contract.
CLOSE_SESSION_ENDED = 4401
CLOSE_TOKEN_EXPIRED = 4402
CLOSE_SLOW_CONSUMER = 4408
CLOSE_KEEPALIVE_TIMEOUT = 4409
CLOSE_GOING_AWAY = 1001


class NatterjackClientError(Exception):
    """Anything the SDK raises. ``code`` is the contract's code (None when there is none)."""

    def __init__(self, message: str, code: int | None = None, *,
                 details: dict[str, Any] | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}
        self.status = status  # the HTTP status, for errors that came from the REST API

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code is not None else self.message


class ApiError(NatterjackClientError):
    """The server refused a request: an HTTP error body or a WebSocket ``error`` frame."""


class LoginRequired(NatterjackClientError):
    """Credentials are missing, wrong, expired or revoked: log in again."""

    def __init__(self, message: str = "log in again", *, close_code: int | None = None,
                 status: int | None = None):
        super().__init__(message, UNAUTHENTICATED, status=status)
        self.close_code = close_code  # 4401 when an open WebSocket was ended by the server


class Unavailable(NatterjackClientError):
    """The server could not be reached (or answered 5003); safe to retry later."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message, UNAVAILABLE, status=status)


def from_body(status: int, body: Any) -> NatterjackClientError:
    """The error an HTTP error answer stands for."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _without_body(status)
    code, message = error.get("code"), str(error.get("message", f"HTTP {status}"))
    return from_code(code if isinstance(code, int) else None, message, error.get("details"), status)


def from_code(code: int | None, message: str, details: Any = None,
              status: int | None = None) -> NatterjackClientError:
    if code == UNAUTHENTICATED:
        return LoginRequired(message, status=status)
    if code == UNAVAILABLE:
        return Unavailable(message, status=status)
    return ApiError(message, code, details=details if isinstance(details, dict) else None, status=status)


def _without_body(status: int) -> NatterjackClientError:
    if status == 401:
        return LoginRequired(f"HTTP {status}", status=status)
    if status in (502, 503, 504):
        return Unavailable(f"HTTP {status}", status=status)
    return ApiError(f"HTTP {status}", INTERNAL if status >= 500 else None, status=status)
