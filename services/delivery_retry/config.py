"""delivery-retry configuration (all variables: ``docs/configuration.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.config import CommonConfig, EnvReader
from libs.streams import StreamSettings

SERVICE = "delivery-retry"
DEFAULT_HTTP_PORT = 8094


@dataclass(frozen=True)
class Config:
    common: CommonConfig
    stream: StreamSettings
    """Used when delivery-retry is the first service to create IM_MESSAGES."""
    ack_batch_ms: float
    """How long the ack writer collects acks before one multi-row write (NJ_DLV_ACK_BATCH_MS)."""
    backoff_s: tuple[float, ...]
    """Redelivery delays for an online device whose cursor stays behind (NJ_DLV_BACKOFF_S)."""
    max_attempts: int
    """Sends before a delivery is marked failed; the live push is attempt 1 (NJ_DLV_MAX_ATTEMPTS)."""


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    config = Config(
        common=CommonConfig.read(env, SERVICE, DEFAULT_HTTP_PORT),
        stream=StreamSettings.read(env),
        ack_batch_ms=env.float("NJ_DLV_ACK_BATCH_MS", 5.0, min=0, max=1000),
        backoff_s=env.floats("NJ_DLV_BACKOFF_S", (1.0, 2.0, 4.0, 8.0, 16.0)),
        max_attempts=env.int("NJ_DLV_MAX_ATTEMPTS", 5, min=1, max=100),
    )
    env.check()
    return config
