"""Errors the router reports; every one carries a contract code."""

from libs.errors import (
    CONFLICT,
    FORBIDDEN,
    MALFORMED,
    NOT_FOUND,
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


class NotAllowed(RouterError):
    """Raised when the caller's role does not allow the change (e.g. a member adding users,
    an admin removing the owner, an owner leaving without transferring ownership)."""

    code = FORBIDDEN


class TargetMissing(RouterError):
    """Raised when the user or message a request names is not there (not a member, no such seq)."""

    code = NOT_FOUND


class TypeConflict(RouterError):
    """Raised when a content type version is registered again with a different schema."""

    code = CONFLICT


class HoleNotAllocated(RouterError):
    """Raised when a hole to void lies above the highest seq the chat's counter handed out."""

    code = CONFLICT
