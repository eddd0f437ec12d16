"""One stack per fault module, on a nats-server, redis-server and MySQL proxy of its own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from libs.config import MySQLConfig
from tests.faultkit import Proxy, RedisServer, RestartableNats
from tools.stack import build_stack

from .infra import STACK_ENV, FaultStack, start_fault_stack


@pytest.fixture(scope="module")
def fault_stack(common_env, mysql_config: MySQLConfig) -> Iterator[FaultStack]:
    with RestartableNats() as nats, RedisServer() as redis, Proxy(mysql_config.port, mysql_config.host) as mysql:
        log_dir = Path(tempfile.mkdtemp(prefix="nj-fault-"))
        # A signing key on disk, as in production: a restarted auth keeps signing with it
        # (a generated one would change, and every token issued before would be refused).
        key = log_dir / "signing-key.pem"
        key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        env = common_env("fault", NJ_NATS_URL=nats.url, NJ_REDIS_URL=redis.url,
                         NJ_MYSQL_PORT=str(mysql.port), NJ_AUTH_SIGNING_KEY_FILE=str(key),
                         **STACK_ENV)
        env.pop("NJ_FAULT_HTTP_PORT")
        stack = build_stack(env, log_dir)
        try:
            yield start_fault_stack(stack, nats, redis, mysql, mysql_config)
        finally:
            stack.stop_all()
            if os.environ.get("NJ_KEEP_LOGS"):
                print(f"fault stack logs kept in {log_dir}")
            else:
                shutil.rmtree(log_dir, ignore_errors=True)
