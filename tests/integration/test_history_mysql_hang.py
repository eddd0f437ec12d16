"""history's writer while MySQL hangs (connections accepted, nothing answered; a
``tests.faultkit.Proxy``): each write fails at the read timeout or at once (circuit open),
never waits out the outage; the writer backs off with doubling waits, and once MySQL
answers again it stores every event exactly once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import trio
from prometheus_client import REGISTRY

from libs.config import MySQLConfig
from services.history import app
from services.history.config import load
from tests.faultkit import Proxy
from tests.integration.test_history_writer import (
    created,
    message,
    new_chat,
    publish,
    seqs,
    wait_for_seq,
)

pytestmark = pytest.mark.timeout(90)
HANG_S, READ_TIMEOUT_MS, RETRY_BASE_MS, RETRY_MAX_MS = 3.0, 300, 50, 800


@pytest.fixture
def proxy(mysql_config: MySQLConfig) -> Iterator[Proxy]:
    with Proxy(mysql_config.port, mysql_config.host) as running:
        yield running


def _failures() -> float:
    return REGISTRY.get_sample_value("nj_history_write_failures_total") or 0.0


async def test_writer_backs_off_while_mysql_hangs_then_catches_up(common_env, proxy: Proxy, capsys) -> None:
    env = common_env("history", NJ_MYSQL_PORT=str(proxy.port), NJ_HISTORY_BATCH_WAIT_MS="20",
                     NJ_MYSQL_READ_TIMEOUT_MS=str(READ_TIMEOUT_MS), NJ_MYSQL_BREAKER_MAX_MS="200",
                     NJ_HISTORY_RETRY_BASE_MS=str(RETRY_BASE_MS),
                     NJ_HISTORY_RETRY_MAX_MS=str(RETRY_MAX_MS))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, load(env))
        bus, chat = runtime.bus, new_chat()
        failed_before = _failures()
        await trio.to_thread.run_sync(proxy.hang)
        await publish(bus, created(chat, "u1", "u2"))
        for seq in range(2, 11):
            await publish(bus, message(chat, seq))
        await trio.sleep(HANG_S)
        await trio.to_thread.run_sync(proxy.up)
        answer = await wait_for_seq(bus, chat, 10)
        runtime.stopping.set()
    assert seqs(answer) == list(range(1, 11))
    # Without a read timeout the first write would wait out the whole hang: no failure.
    assert _failures() - failed_before >= 3
    waits = [float(w) for w in re.findall(r"history.write_failed.*?retry_in=([0-9.]+)", capsys.readouterr().out)]
    assert len(waits) >= 3 and waits[:3] == [0.05, 0.1, 0.2], waits
