"""libs/db.py against a MySQL that goes away (``tests.faultkit.Proxy``): a hung server
costs one call its read timeout, then calls fail at once (circuit open) and no hung
connection goes back to the pool; refused, they fail at once; back up, the next trial
closes the breaker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
import trio

from libs.config import MySQLConfig
from libs.db import Database
from libs.errors import Unavailable
from tests.faultkit import Proxy

pytestmark = pytest.mark.timeout(60)
READ_TIMEOUT_S = 0.5


@pytest.fixture
def proxy(mysql_config: MySQLConfig) -> Iterator[Proxy]:
    with Proxy(mysql_config.port, mysql_config.host) as running:
        yield running


@pytest.fixture
def db(mysql_config: MySQLConfig, proxy: Proxy) -> Iterator[Database]:
    config = dataclasses.replace(mysql_config, port=proxy.port, retry_base_ms=50, breaker_max_ms=200,
                                 connect_timeout_ms=500, read_timeout_ms=int(READ_TIMEOUT_S * 1000))
    database = Database(config, database="")
    yield database
    database.close()


async def _switch(state: Callable[[], None]) -> None:
    await trio.to_thread.run_sync(state)


async def _select(db: Database) -> float:
    """Seconds ``SELECT 1`` took to fail; fails the test if it answered."""
    started = trio.current_time()
    with pytest.raises(Unavailable):
        await db.fetchone("SELECT 1 AS one")
    return trio.current_time() - started


async def _until_answered(db: Database, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
                return
            except Unavailable:
                await trio.sleep(0.02)


async def test_a_hung_server_times_out_once_then_calls_fail_fast(db: Database, proxy: Proxy) -> None:
    assert await db.fetchone("SELECT 1 AS one") == {"one": 1}  # a pooled connection
    await _switch(proxy.hang)
    took = await _select(db)
    assert READ_TIMEOUT_S * 0.9 <= took < READ_TIMEOUT_S * 4
    assert db.breaker.is_open and db._idle == []  # the hung connection was discarded
    assert await _select(db) < 0.05
    await _switch(proxy.up)
    await _until_answered(db)
    assert not db.breaker.is_open


async def test_a_refusing_server_fails_every_call_at_once(db: Database, proxy: Proxy) -> None:
    assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
    await _switch(proxy.down)
    assert [await _select(db) < 0.5 for _ in range(5)] == [True] * 5
    assert db.breaker.is_open
    await _switch(proxy.up)
    await _until_answered(db)


async def test_the_health_probe_closes_the_breaker(db: Database, proxy: Proxy) -> None:
    await _switch(proxy.down)
    await _select(db)
    await _switch(proxy.up)
    assert await db.probe() == "ok"
    assert not db.breaker.is_open


async def test_a_restarted_server_costs_a_stale_pooled_connection_nothing(db: Database, proxy: Proxy) -> None:
    """Connections cut while the server was away are stale, not a reason to fail fast."""
    await db.fetchone("SELECT 1 AS one")
    await _switch(proxy.down)
    await _switch(proxy.up)
    assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
    assert not db.breaker.is_open
