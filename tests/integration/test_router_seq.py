"""Sequence numbers when Redis loses its counters or goes away (real NATS and MySQL, and a
redis-server this test starts on a free port, never the machine's).

Contract: per chat, seq never repeats or goes backwards, and every number from 1 to the
last is exactly one stored event (a message, a chat change, or a void).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import nats.js.errors
import orjson
import pytest
import redis
import trio

from libs import rpc
from libs.bus import Bus
from libs.events import stream_subject
from libs.natsd import free_port
from libs.streams import STREAM
from services.router import app
from services.router.config import load

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def flushall(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def router(common_env, own_redis: RedisServer):
    config = load(common_env("router", NJ_REDIS_URL=own_redis.url, NJ_ROUTER_VOID_GRACE_S="0.5",
                             NJ_ROUTER_SEQ_BLOCK="5"))
    users = {"alice", "bob"}

    async def exists(payload: dict[str, Any]) -> dict[str, Any]:
        return {"missing": [u for u in payload["user_ids"] if u not in users],
                "existing": [u for u in payload["user_ids"] if u in users]}

    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        await nursery.start(rpc.serve_rpc, runtime.bus, "im.auth.users.exist", "auth", exists)
        yield runtime
        runtime.stopping.set()
        nursery.cancel_scope.cancel()


async def send(bus: Bus, chat_id: str) -> int:
    ack = await rpc.call(bus, "im.router.send", {
        "sender_id": "alice", "sender_device_id": "d1", "client_msg_id": secrets.token_hex(8),
        "chat_id": chat_id, "content": "hello"}, timeout=15)
    return int(ack["seq"])


async def stored_events(bus: Bus, chat_id: str) -> list[dict[str, Any]]:
    """Every event of the chat in the stream, in stream order."""
    jsm, found, after = bus.nc.jsm(), [], 1
    while True:
        try:
            raw = await bus.call_aio(jsm.get_msg, STREAM, after, stream_subject(chat_id), False, True)
        except nats.js.errors.NotFoundError:
            return found
        found.append(orjson.loads(raw.data))
        after = raw.seq + 1


async def assert_dense(bus: Bus, chat_id: str, acked: list[int]) -> None:
    """1..last: each number exactly once; acked numbers are messages, the rest voids/changes."""
    with trio.fail_after(15):
        while True:
            stored = await stored_events(bus, chat_id)
            seqs = sorted(e["seq"] for e in stored)
            if seqs == list(range(1, max(acked) + 1)):
                break
            await trio.sleep(0.2)
    kinds = {e["seq"]: e["event"] for e in stored}
    assert len(stored) == len(seqs), "a seq was stored twice"
    assert all(kinds[s] == "message" for s in acked)
    assert all(kinds[s] in ("void", "chat_updated") for s in set(seqs) - set(acked))
    assert kinds[1] == "chat_updated"


async def test_a_flushed_counter_resumes_above_the_mark_and_the_gap_becomes_voids(
        router, own_redis: RedisServer) -> None:
    bus = router.bus
    chat = await rpc.call(bus, "im.router.chat.create",
                          {"creator_id": "alice", "type": "group", "members": ["bob"]}, timeout=10)
    cid = chat["chat_id"]
    acked = [await send(bus, cid) for _ in range(3)]
    assert acked == [2, 3, 4]
    await trio.sleep(0.3)  # let the confirmed seq reach MySQL
    own_redis.flushall()
    acked += [await send(bus, cid) for _ in range(3)]
    assert acked == sorted(set(acked)) and acked[3] > 4
    await assert_dense(bus, cid, acked)


async def test_sends_continue_from_mysql_while_redis_is_down(router, own_redis: RedisServer) -> None:
    bus = router.bus
    chat = await rpc.call(bus, "im.router.chat.create",
                          {"creator_id": "alice", "type": "group", "members": ["bob"]}, timeout=10)
    cid = chat["chat_id"]
    acked = [await send(bus, cid) for _ in range(2)]
    own_redis.stop()
    acked += [await send(bus, cid) for _ in range(3)]
    own_redis.start()  # empty: every counter is gone
    acked += [await send(bus, cid) for _ in range(3)]
    assert acked == sorted(set(acked)), acked
    await assert_dense(bus, cid, acked)
    listed = await rpc.call(bus, "im.router.chat.list", {"user_id": "bob"}, timeout=10)
    assert [c["last_seq"] for c in listed["chats"] if c["chat_id"] == cid] == [acked[-1]]
