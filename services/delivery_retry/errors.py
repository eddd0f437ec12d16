"""Errors delivery-retry reports to its callers (codes from :mod:`libs.errors`)."""

from __future__ import annotations

from libs.errors import FORBIDDEN, MALFORMED, NOT_FOUND, UNAVAILABLE, UNKNOWN_CHAT, NatterjackError


class DeliveryError(NatterjackError):
    """Root of every error delivery-retry answers a request with."""


class BadRequest(DeliveryError):
    """Raised when a request lacks a field, has one of the wrong type, or acks a seq
    outside 1..last_seq of the chat."""

    code = MALFORMED


class UnknownChat(DeliveryError):
    """Raised when the chat has no event on the stream yet (as far as this service knows)."""

    code = UNKNOWN_CHAT


class NotMember(DeliveryError):
    """Raised when the user is not a current member of the chat."""

    code = FORBIDDEN


class Draining(DeliveryError):
    """Raised when an ack arrives after the service started draining; safe to retry."""

    code = UNAVAILABLE


class MessageNotFound(DeliveryError):
    """Raised by the status API when no message has this id (as far as this service knows)."""

    code = NOT_FOUND
