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
    dedup_ttl_s: int
    max_group_members: int
    metadata_max_bytes: int
    publish_deadline_s: float


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    config = Config(
        common=CommonConfig.read(env, "router", 8092),
        stream=StreamSettings.read(env),
        seq_block=env.int("NJ_ROUTER_SEQ_BLOCK", 1000, min=1, max=1_000_000),
        dedup_ttl_s=env.int("NJ_ROUTER_DEDUP_TTL_S", 86400, min=1),
        max_group_members=env.int("NJ_ROUTER_MAX_GROUP_MEMBERS", 10_000, min=2),
        metadata_max_bytes=env.int("NJ_ROUTER_METADATA_MAX_BYTES", 4096, min=0),
        publish_deadline_s=env.float("NJ_ROUTER_PUBLISH_DEADLINE_S", 10.0, min=0.1),
    )
    env.check()
    return config
