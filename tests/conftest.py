"""Fixtures shared by every test: our own nats-server, a database and a Redis prefix per run."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pymysql
import pytest
import redis

from libs.config import MySQLConfig
from libs.natsd import NatsServer
from tests.stacks import running_stack
from tools.stack import Stack, running_nats

MYSQL_HOST = os.environ.get("NJ_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("NJ_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("NJ_TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("NJ_TEST_MYSQL_PASSWORD", "")
REDIS_URL = os.environ.get("NJ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    with running_nats() as server:
        yield server


@pytest.fixture(scope="session")
def mysql_config() -> Iterator[MySQLConfig]:
    name = f"nj_test_{RUN_ID}"
    config = MySQLConfig(MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, name, 8)
    yield config
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"njtest:{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def common_env(nats_server: NatsServer, mysql_config: MySQLConfig, redis_url: str,
               redis_prefix: str):
    """``common_env(service)`` -> environ for that service against the test infrastructure."""

    def build(service: str, **extra: str) -> dict[str, str]:
        env = {
            "NJ_NATS_URL": nats_server.url,
            "NJ_MYSQL_HOST": mysql_config.host, "NJ_MYSQL_PORT": str(mysql_config.port),
            "NJ_MYSQL_USER": mysql_config.user, "NJ_MYSQL_PASSWORD": mysql_config.password,
            "NJ_MYSQL_DATABASE": mysql_config.database,
            "NJ_REDIS_URL": redis_url, "NJ_REDIS_PREFIX": redis_prefix,
            f"NJ_{service.upper().replace('-', '_')}_HTTP_PORT": "0",
            "NJ_LOG_LEVEL": "warning", "NJ_SHUTDOWN_DEADLINE_S": "3",
            "NJ_ARGON2_TIME_COST": "1", "NJ_ARGON2_MEMORY_KIB": "8", "NJ_ARGON2_PARALLELISM": "1",
            # Every test client comes from 127.0.0.1: per-address limits would trip.
            "NJ_AUTH_REGISTER_PER_IP_PER_HOUR": "1000000", "NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS": "100000",
        }
        env.update(extra)
        return env

    return build


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra environment for the module's ``stack`` (a module overrides this for its knobs)."""
    return {}


@pytest.fixture(scope="module")
def stack_nats() -> Iterator[NatsServer]:
    """A nats-server of the module's own, for its ``stack``."""
    with running_nats("nj-stack-nats-") as server:
        yield server


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer, stack_env: dict[str, str]) -> Iterator[Stack]:
    """The whole product as processes, once per module."""
    with running_stack(common_env, stack_nats, **stack_env) as running:
        yield running
