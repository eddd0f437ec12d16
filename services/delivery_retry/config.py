"""delivery-retry configuration (all variables: ``docs/configuration.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.config import CommonConfig, EnvReader
from libs.streams import StreamSettings

SERVICE = "delivery-retry"
DEFAULT_HTTP_PORT = 8094


@dataclass(frozen=True)
class PushSettings:
    """Push events for offline recipients and the optional webhook sink (NJ_DLV_PUSH_*)."""

    interval_s: float
    """At most one push per user per interval; later messages are counted and coalesced."""
    max_users: int
    """Users tracked by the in-process throttle; beyond it the oldest window is flushed early."""
    preview_chars: int
    """Length of the text preview in a push; 0 sends no content at all."""
    webhook_url: str
    """POST target for every push (empty: no webhook)."""
    webhook_timeout_s: float
    webhook_retries: int
    """Retries after a failed POST, with exponential backoff and full jitter."""
    webhook_backoff_s: float
    """First retry delay (doubles per retry)."""
    webhook_queue: int
    """Pushes waiting for the webhook; beyond it new ones are dropped and counted."""
    webhook_concurrency: int
    breaker_failures: int
    """Consecutive failed POSTs that open the circuit breaker."""
    breaker_cooldown_s: float
    """How long the breaker stays open before one probe is let through."""

    @classmethod
    def read(cls, env: EnvReader) -> PushSettings:
        url = env.str("NJ_DLV_PUSH_WEBHOOK_URL", "")
        if url and not url.startswith(("http://", "https://")):
            env.errors.append(f"NJ_DLV_PUSH_WEBHOOK_URL={url!r} must be an http:// or https:// URL")
        return cls(
            interval_s=env.float("NJ_DLV_PUSH_INTERVAL_S", 1.0, min=0.01, max=3600),
            max_users=env.int("NJ_DLV_PUSH_MAX_USERS", 100_000, min=1, max=10_000_000),
            preview_chars=env.int("NJ_DLV_PUSH_PREVIEW_CHARS", 100, min=0, max=1000),
            webhook_url=url,
            webhook_timeout_s=env.float("NJ_DLV_PUSH_WEBHOOK_TIMEOUT_S", 5.0, min=0.05, max=120),
            webhook_retries=env.int("NJ_DLV_PUSH_WEBHOOK_RETRIES", 3, min=0, max=20),
            webhook_backoff_s=env.float("NJ_DLV_PUSH_WEBHOOK_BACKOFF_S", 0.5, min=0, max=60),
            webhook_queue=env.int("NJ_DLV_PUSH_WEBHOOK_QUEUE", 1000, min=1, max=1_000_000),
            webhook_concurrency=env.int("NJ_DLV_PUSH_WEBHOOK_CONCURRENCY", 4, min=1, max=256),
            breaker_failures=env.int("NJ_DLV_PUSH_BREAKER_FAILURES", 5, min=1, max=1000),
            breaker_cooldown_s=env.float("NJ_DLV_PUSH_BREAKER_COOLDOWN_S", 30.0, min=0.01,
                                         max=3600),
        )


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
    push: PushSettings
    """Push events for offline recipients (NJ_DLV_PUSH_*)."""
    scan_interval_ms: float = 100.0
    """The shortest pause between two scheduler scans that found nothing due (NJ_DLV_SCAN_INTERVAL_MS)."""
    idle_scan_ms: float = 2000.0
    """The longest pause: how late rows a dead replica left behind are found (NJ_DLV_IDLE_SCAN_MS)."""
    max_resend: int = 500
    """Events per redelivery at most; the rest follows once the device acks (NJ_DLV_MAX_RESEND)."""
    lease_s: float = 30.0
    """A claimed look or retry falls due again after this when its replica died (NJ_DLV_LEASE_S)."""


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    config = Config(
        common=CommonConfig.read(env, SERVICE, DEFAULT_HTTP_PORT),
        stream=StreamSettings.read(env),
        ack_batch_ms=env.float("NJ_DLV_ACK_BATCH_MS", 5.0, min=0, max=1000),
        backoff_s=env.floats("NJ_DLV_BACKOFF_S", (1.0, 2.0, 4.0, 8.0, 16.0)),
        max_attempts=env.int("NJ_DLV_MAX_ATTEMPTS", 5, min=1, max=100),
        push=PushSettings.read(env),
        scan_interval_ms=env.float("NJ_DLV_SCAN_INTERVAL_MS", 100.0, min=1, max=60_000),
        idle_scan_ms=env.float("NJ_DLV_IDLE_SCAN_MS", 2000.0, min=1, max=600_000),
        max_resend=env.int("NJ_DLV_MAX_RESEND", 500, min=1, max=10_000),
        lease_s=env.float("NJ_DLV_LEASE_S", 30.0, min=0.5, max=3600),
    )
    env.check()
    return config
