"""The sequencer while Redis flaps under concurrent sends (real MySQL, a redis-server of the
test's own that it stops and restarts empty).

Contract: no number is handed out twice, and every number from 1 to the highest is either
handed out or reported as a gap (so it becomes a void): seq stays dense.
"""

from __future__ import annotations

import contextlib
import random
import secrets

import pymysql
import pytest
import trio

from libs.cache import Cache
from libs.config import MySQLConfig
from libs.db import Database
from libs.migrate import migrate
from services.router.app import MIGRATIONS
from services.router.sequences import Sequencer
from tests.faultkit import RedisServer

pytestmark = pytest.mark.timeout(120)
SENDERS, BLOCK = 12, 50


class Run:
    def __init__(self, seq: Sequencer, chat_id: str, seed: int) -> None:
        self.seq, self.chat_id, self.random = seq, chat_id, random.Random(seed)
        self.handed: list[int] = [1]  # the created event
        self.gaps: list[tuple[int, int]] = []
        seq.on_gap = lambda chat, first, last: self.gaps.append((first, last))

    async def sender(self, until: float) -> None:
        """Take numbers like a send does: allocate, publish (confirm) a moment later."""
        while trio.current_time() < until:
            try:
                number = await self.seq.next(self.chat_id)
            except Exception:  # noqa: BLE001 - Redis and MySQL both failing: the send fails
                await trio.sleep(0.05)
                continue
            self.handed.append(number)
            await trio.sleep(self.random.uniform(0, 0.02))
            self.seq.confirm(self.chat_id, number)
            await trio.sleep(self.random.uniform(0, 0.05))

    async def flusher(self, until: float) -> None:
        while trio.current_time() < until:
            with contextlib.suppress(Exception):  # MySQL busy: the next flush writes it
                await self.seq.flush()
            await trio.sleep(0.1)

    def holes(self) -> list[int]:
        covered = set(self.handed)
        for first, last in self.gaps:
            covered.update(range(first, last + 1))
        return sorted(set(range(1, max(self.handed) + 1)) - covered)


async def flap(redis: RedisServer) -> None:
    """Down for 2 s, back (empty), down again 0.5 s later for 0.7 s, back (empty)."""
    for up_after, down_after in ((1.0, 2.0), (0.5, 0.7)):
        await trio.sleep(up_after)
        await trio.to_thread.run_sync(redis.stop)
        await trio.sleep(down_after)
        await trio.to_thread.run_sync(redis.start)


async def _new_chat(mysql_config: MySQLConfig) -> str:
    """A group chat row of the router's (high-water mark 1), written straight to MySQL."""
    await trio.to_thread.run_sync(migrate, mysql_config, "router", MIGRATIONS)
    chat_id = secrets.token_hex(13).upper()
    conn = pymysql.connect(host=mysql_config.host, port=mysql_config.port, user=mysql_config.user,
                           password=mysql_config.password, database=mysql_config.database,
                           autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO router_conversations (chat_id, type, created_by, created_ts,"
                       " seq_hwm) VALUES (%s, 'group', 'u', 0, 1)", (chat_id,))
    conn.close()
    return chat_id


@pytest.mark.parametrize("background", [False, True], ids=["inline", "reserve-ahead"])
@pytest.mark.parametrize("seed", range(3))
async def test_numbers_stay_unique_and_dense_while_redis_flaps(mysql_config: MySQLConfig,
                                                                seed: int, background: bool) -> None:
    chat_id = await _new_chat(mysql_config)
    with RedisServer() as redis:
        cache = Cache(redis.url, f"seqflap:{secrets.token_hex(3)}:")
        seq = Sequencer(Database(mysql_config), cache, BLOCK)
        await seq.chat_created(chat_id)
        run, until = Run(seq, chat_id, seed), trio.current_time() + 6
        async with trio.open_nursery() as nursery:
            if background:  # as in the router: blocks reserved beside the sends
                seq.spawn = nursery.start_soon
            for _ in range(SENDERS):
                nursery.start_soon(run.sender, until)
            nursery.start_soon(run.flusher, until)
            nursery.start_soon(flap, redis)
        cache.close()
    twice = sorted({n for n in run.handed if run.handed.count(n) > 1})
    assert not twice, f"handed out twice: {twice[:20]}"
    holes = run.holes()
    assert not holes, f"{len(holes)} numbers neither handed out nor voided: {holes[:20]} " \
                      f"(gaps {run.gaps})"


async def test_the_counter_script_is_reloaded_after_redis_forgot_it(mysql_config: MySQLConfig) -> None:
    """The fast path INCRs by the script's hash inside shared pipelines; a Redis that lost
    its scripts (SCRIPT FLUSH, a restart) answers NOSCRIPT and the number comes anyway."""
    chat_id = await _new_chat(mysql_config)
    with RedisServer() as redis:
        cache = Cache(redis.url, f"seqscript:{secrets.token_hex(3)}:")
        seq = Sequencer(Database(mysql_config), cache, BLOCK)
        await seq.chat_created(chat_id)
        got = [await seq.next(chat_id) for _ in range(3)]
        await cache.run(lambda r: r.script_flush())
        got += [await seq.next(chat_id) for _ in range(3)]
        cache.close()
    assert got == [2, 3, 4, 5, 6, 7]
