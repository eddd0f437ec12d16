"""Errors of the gateway edge."""

from libs.errors import MALFORMED, TOO_LARGE, UNKNOWN_TYPE, NatterjackError


class GatewayError(NatterjackError):
    """Root of the gateway's errors."""


class BadFrame(GatewayError):
    """Raised when a WebSocket frame or REST body is not a JSON object of the right shape."""

    code = MALFORMED


class FrameTooLarge(GatewayError):
    """Raised when a frame exceeds the configured cap (64 KiB by default)."""

    code = TOO_LARGE


class UnknownFrameType(GatewayError):
    """Raised when a frame's ``type`` is not one the contract defines."""

    code = UNKNOWN_TYPE
