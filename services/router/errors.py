"""Errors the router reports; every one carries a contract code."""

from libs.errors import (
    FORBIDDEN,
    MALFORMED,
    SCHEMA_FAILED,
    UNKNOWN_CHAT,
    UNKNOWN_TYPE,
    NatterjackError,
)


class RouterError(NatterjackError):
    """Root of the router's errors."""


class BadRequest(RouterError):
    """Raised when a request misses a field or a field has the wrong type or size."""

    code = MALFORMED


class UnknownChat(RouterError):
    """Raised when the chat does not exist."""

    code = UNKNOWN_CHAT


class NotMember(RouterError):
    """Raised when the caller is not a member of the chat it acts on."""

    code = FORBIDDEN


class UnknownContentType(RouterError):
    """Raised when ``content_type`` (or its version) is not registered."""

    code = UNKNOWN_TYPE


class ContentInvalid(RouterError):
    """Raised when content fails its type's JSON Schema (``details.path`` names the field)."""

    code = SCHEMA_FAILED
