"""history's configuration: the common settings plus the writer's batch and retry knobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.config import CommonConfig, EnvReader
from libs.streams import StreamSettings

DEFAULT_HTTP_PORT = 8093


@dataclass(frozen=True)
class Config:
    common: CommonConfig
    stream: StreamSettings  # used when history is the first to create IM_MESSAGES
    batch_max: int  # rows per MySQL transaction, at most
    batch_wait_ms: int  # how long the first row of a batch waits for company
    retry_base_ms: int  # first back-off after a failed MySQL write
    retry_max_ms: int  # back-off cap; the writer retries forever
    cache_events: int = 200  # newest events per chat kept in Redis (0: no cache)
    cache_ttl_s: int = 86_400  # a chat's cached events expire this long after its last write
    retention_days: int = 0  # delete events older than this (0: keep forever)
    retention_interval_s: int = 3_600  # pause between retention sweeps
    retention_batch: int = 1_000  # events deleted per chat per transaction, at most
    # A seq still missing this long after a higher one was stored is voided (holes.py). Must
    # outlast the router's NJ_ROUTER_PUBLISH_DEADLINE_S + NJ_ROUTER_VOID_GRACE_S (10 + 10 s)
    # and, plus hole_check_s and history's lag, stay under the gateways' NJ_GATEWAY_GAP_WAIT_S
    # (30 s) so they receive the void instead of skipping the number.
    hole_after_s: float = 22.0
    hole_check_s: float = 1.0  # how often candidates are checked
    hole_scan: int = 1_000  # seqs looked at below a chat's first event seen after a start

    @property
    def batch_wait_s(self) -> float:
        return self.batch_wait_ms / 1000

    @property
    def retry_base_s(self) -> float:
        return self.retry_base_ms / 1000

    @property
    def retry_max_s(self) -> float:
        return self.retry_max_ms / 1000


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    config = Config(
        common=CommonConfig.read(env, "history", DEFAULT_HTTP_PORT),
        stream=StreamSettings.read(env),
        batch_max=env.int("NJ_HISTORY_BATCH_MAX", 100, min=1, max=1000),
        batch_wait_ms=env.int("NJ_HISTORY_BATCH_WAIT_MS", 50, min=0, max=60_000),
        retry_base_ms=env.int("NJ_HISTORY_RETRY_BASE_MS", 100, min=1, max=600_000),
        retry_max_ms=env.int("NJ_HISTORY_RETRY_MAX_MS", 10_000, min=1, max=3_600_000),
        cache_events=env.int("NJ_HISTORY_CACHE_EVENTS", 200, min=0, max=10_000),
        cache_ttl_s=env.int("NJ_HISTORY_CACHE_TTL_S", 86_400, min=1, max=30 * 86_400),
        retention_days=env.int("NJ_HISTORY_RETENTION_DAYS", 0, min=0, max=100_000),
        retention_interval_s=env.int("NJ_HISTORY_RETENTION_INTERVAL_S", 3_600, min=1, max=86_400),
        retention_batch=env.int("NJ_HISTORY_RETENTION_BATCH", 1_000, min=1, max=100_000),
        hole_after_s=env.float("NJ_HISTORY_HOLE_AFTER_S", 22.0, min=0.1, max=3_600),
        hole_check_s=env.float("NJ_HISTORY_HOLE_CHECK_S", 1.0, min=0.01, max=60),
        hole_scan=env.int("NJ_HISTORY_HOLE_SCAN", 1_000, min=0, max=100_000),
    )
    if config.retry_base_ms > config.retry_max_ms:
        env.errors.append("NJ_HISTORY_RETRY_BASE_MS must not exceed NJ_HISTORY_RETRY_MAX_MS")
    env.check()
    return config
