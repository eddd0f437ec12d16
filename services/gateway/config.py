"""Gateway configuration, from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from libs.config import CommonConfig, EnvReader


@dataclass(frozen=True)
class Config:
    common: CommonConfig
    ws_host: str
    ws_port: int
    public_ws_url: str
    max_frame_bytes: int
    send_queue: int
    sends_in_flight: int
    handshake_timeout_s: float
    catch_up_wait_s: float
    gap_wait_s: float
    ping_interval_s: float
    ping_timeout_s: float
    tls_cert: str
    tls_key: str


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = EnvReader(environ)
    common = CommonConfig.read(env, "gateway", 8080)
    ws_host = env.str("NJ_GATEWAY_WS_HOST", common.http_host)
    ws_port = env.int("NJ_GATEWAY_WS_PORT", 8081, min=0, max=65535)
    tls_cert = env.environ.get("NJ_GATEWAY_TLS_CERT", "")
    tls_key = env.environ.get("NJ_GATEWAY_TLS_KEY", "")
    if bool(tls_cert) != bool(tls_key):
        env.errors.append("NJ_GATEWAY_TLS_CERT and NJ_GATEWAY_TLS_KEY must be set together")
    config = Config(
        common=common, ws_host=ws_host, ws_port=ws_port,
        public_ws_url=env.environ.get("NJ_GATEWAY_PUBLIC_WS_URL", ""),
        max_frame_bytes=env.int("NJ_GATEWAY_MAX_FRAME_BYTES", 65536, min=1024, max=16 * 1024 * 1024),
        send_queue=env.int("NJ_GATEWAY_SEND_QUEUE", 1024, min=8),
        sends_in_flight=env.int("NJ_GATEWAY_SENDS_IN_FLIGHT", 32, min=1),
        handshake_timeout_s=env.float("NJ_GATEWAY_HANDSHAKE_TIMEOUT_S", 10.0, min=0.1),
        catch_up_wait_s=env.float("NJ_GATEWAY_CATCH_UP_WAIT_S", 5.0, min=0.0),
        gap_wait_s=env.float("NJ_GATEWAY_GAP_WAIT_S", 30.0, min=0.1, max=3600),
        ping_interval_s=env.float("NJ_GATEWAY_PING_INTERVAL_S", 20.0, min=0.1),
        ping_timeout_s=env.float("NJ_GATEWAY_PING_TIMEOUT_S", 10.0, min=0.1),
        tls_cert=tls_cert, tls_key=tls_key,
    )
    env.check()
    return config
