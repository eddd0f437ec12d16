"""Errors history reports to its callers; all derive from :class:`HistoryError`."""

from __future__ import annotations

from libs.errors import FORBIDDEN, MALFORMED, NOT_FOUND, UNKNOWN_CHAT, NatterjackError


class HistoryError(NatterjackError):
    """Root of history's errors; raised only through the subclasses below."""


class BadRequest(HistoryError):
    """Raised when a page/get request misses a field or has a bad bound, seq or limit (4000)."""

    code = MALFORMED


class UnknownChat(HistoryError):
    """Raised when history has no membership at all for the chat: it never saw it created (4001)."""

    code = UNKNOWN_CHAT


class NotMember(HistoryError):
    """Raised when the asking user is not a current member of the chat (4003)."""

    code = FORBIDDEN


class EventNotFound(HistoryError):
    """Raised when the asked-for event (seq or message_id) is not stored (4004)."""

    code = NOT_FOUND
