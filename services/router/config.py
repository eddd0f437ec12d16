"""Router configuration, from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.config import CommonConfig, EnvReader
from libs.streams import StreamSettings


@dataclass(frozen=True)
class Config:
    common: CommonConfig
    stream: StreamSettings
    seq_block: int
    seq_reserve_wait_s: float
    dedup_ttl_s: int
    dedup_durable: bool
    dedup_claim_wait_s: float
    dedup_batch_max: int
    dedup_cleanup_interval_s: float
    dedup_cleanup_batch: int
    max_group_members: int
    metadata_max_bytes: int
    publish_deadline_s: float
    void_grace_s: float
    confirm_flush_s: float
    edit_window_s: int
    recall_window_s: int
    typing_min_interval_ms: int
    presence_max_group: int
    fanout_concurrency: int
    fanout_backlog: int


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    config = Config(
        common=CommonConfig.read(env, "router", 8092),
        stream=StreamSettings.read(env),
        seq_block=env.int("NJ_ROUTER_SEQ_BLOCK", 1000, min=1, max=1_000_000),
        seq_reserve_wait_s=env.int("NJ_ROUTER_SEQ_RESERVE_WAIT_MS", 250, min=0, max=60_000) / 1000,
        dedup_ttl_s=env.int("NJ_ROUTER_DEDUP_TTL_S", 86400, min=1),
        dedup_durable=env.bool("NJ_ROUTER_DEDUP_DURABLE", True),
        dedup_claim_wait_s=env.int("NJ_ROUTER_DEDUP_CLAIM_WAIT_MS", 500, min=1, max=60_000) / 1000,
        dedup_batch_max=env.int("NJ_ROUTER_DEDUP_BATCH_MAX", 500, min=1, max=10_000),
        dedup_cleanup_interval_s=env.float("NJ_ROUTER_DEDUP_CLEANUP_INTERVAL_S", 300.0, min=0.1),
        dedup_cleanup_batch=env.int("NJ_ROUTER_DEDUP_CLEANUP_BATCH", 1000, min=1, max=100_000),
        max_group_members=env.int("NJ_ROUTER_MAX_GROUP_MEMBERS", 10_000, min=2),
        metadata_max_bytes=env.int("NJ_ROUTER_METADATA_MAX_BYTES", 4096, min=0),
        publish_deadline_s=env.float("NJ_ROUTER_PUBLISH_DEADLINE_S", 10.0, min=0.1),
        void_grace_s=env.float("NJ_ROUTER_VOID_GRACE_S", 10.0, min=0.0, max=3600),
        confirm_flush_s=env.float("NJ_ROUTER_CONFIRM_FLUSH_S", 0.1, min=0.01, max=60),
        edit_window_s=env.int("NJ_ROUTER_EDIT_WINDOW_S", 900, min=0),
        recall_window_s=env.int("NJ_ROUTER_RECALL_WINDOW_S", 120, min=0),
        typing_min_interval_ms=env.int("NJ_ROUTER_TYPING_MIN_INTERVAL_MS", 1000, min=0),
        presence_max_group=env.int("NJ_ROUTER_PRESENCE_MAX_GROUP", 200, min=2),
        fanout_concurrency=env.int("NJ_ROUTER_FANOUT_CONCURRENCY", 16, min=1, max=1024),
        fanout_backlog=env.int("NJ_ROUTER_FANOUT_BACKLOG", 1024, min=1),
    )
    env.check()
    return config
