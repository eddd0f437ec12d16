"""The sequencer while MySQL hangs or refuses (``tests.faultkit.Proxy`` in front of it): sends
crossing a block boundary still get their numbers at once (the reservation is deferred,
never waited on for longer than ``reserve_wait``), numbers stay unique and consecutive,
and once MySQL is back the flusher lifts the high-water mark above every number handed out."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator

import pymysql
import pytest
import trio

from libs.cache import Cache
from libs.config import MySQLConfig
from libs.db import Database
from libs.migrate import migrate
from services.router.app import MIGRATIONS
from services.router.sequences import Sequencer
from tests.conftest import REDIS_URL
from tests.faultkit import DOWN, HANG, Proxy

pytestmark = pytest.mark.timeout(60)
BLOCK, RESERVE_WAIT_S, READ_TIMEOUT_S = 10, 0.2, 2.0


@pytest.fixture
def proxy(mysql_config: MySQLConfig) -> Iterator[Proxy]:
    with Proxy(mysql_config.port, mysql_config.host) as running:
        yield running


def _new_chat(config: MySQLConfig) -> str:
    migrate(config, "router", MIGRATIONS)
    chat_id = secrets.token_hex(13).upper()
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=config.database, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO router_conversations (chat_id, type, created_by, created_ts,"
                       " seq_hwm) VALUES (%s, 'group', 'u', 0, 1)", (chat_id,))
    conn.close()
    return chat_id


def _hwm(config: MySQLConfig, chat_id: str) -> int:
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=config.database)
    with conn.cursor() as cursor:
        cursor.execute("SELECT seq_hwm FROM router_conversations WHERE chat_id = %s", (chat_id,))
        (hwm,) = cursor.fetchone()
    conn.close()
    return int(hwm)


@pytest.mark.parametrize("outage", [HANG, DOWN])
async def test_sends_do_not_wait_on_mysql_at_block_boundaries(mysql_config: MySQLConfig, proxy: Proxy,
                                                              outage: str) -> None:
    chat_id = await trio.to_thread.run_sync(_new_chat, mysql_config)
    proxied = dataclasses.replace(mysql_config, port=proxy.port, read_timeout_ms=int(READ_TIMEOUT_S * 1000),
                                  retry_base_ms=50, breaker_max_ms=200)
    db, cache = Database(proxied), Cache(REDIS_URL, f"seqaway:{secrets.token_hex(3)}:")
    seq = Sequencer(db, cache, BLOCK, reserve_wait=RESERVE_WAIT_S)
    try:
        async with trio.open_nursery() as nursery:
            seq.spawn = nursery.start_soon
            await seq.chat_created(chat_id)
            handed = [await seq.next(chat_id) for _ in range(BLOCK)]  # MySQL up: reserved ahead
            await trio.to_thread.run_sync(getattr(proxy, outage))
            away = trio.current_time()
            for _ in range(4 * BLOCK):  # several block boundaries while MySQL is away
                handed.append(await seq.next(chat_id))
            # One wait for the hung reservation, shared by the sends: all of them together
            # take less than the read timeout that a waiting send would have cost.
            assert trio.current_time() - away < RESERVE_WAIT_S + 0.3
            await trio.to_thread.run_sync(proxy.up)
            with trio.fail_after(READ_TIMEOUT_S + 5):  # a hung trial ends by its read timeout
                while _hwm(mysql_config, chat_id) < handed[-1]:
                    try:
                        await seq.flush()
                    except Exception:  # noqa: BLE001 - the breaker's next trial will get through
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        db.close()
        cache.close()
    assert handed == list(range(2, 2 + 5 * BLOCK))
