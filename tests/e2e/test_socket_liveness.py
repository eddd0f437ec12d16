"""Sockets that stop working: a peer that vanished (keepalive, 4409), one that stopped
reading (slow consumer, 4408), and a device whose missed events retention deleted."""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from libs.natsd import NatsServer, free_port
from tools.stack import Stack, build_stack, start_stack

from .client import User, next_frame, register_and_login, send
from .rawws import open_raw

pytestmark = pytest.mark.e2e

PING_INTERVAL_S, PING_TIMEOUT_S = 1.0, 1.0
SMALL_QUEUE = 8
BIG = "x" * 16_000  # a few fill a socket whose reader shrank its buffer
DAY_MS = 86_400_000
QUEUE = 256  # test clients buffer this many frames, so their pongs never wait on the test


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer) -> Iterator[Stack]:
    """This module's own stack: quick keepalive, retention swept every second."""
    env = common_env("e2e", NJ_NATS_URL=stack_nats.url, NJ_LOG_LEVEL="info",
                     NJ_GATEWAY_CATCH_UP_WAIT_S="15",
                     NJ_GATEWAY_PING_INTERVAL_S=str(PING_INTERVAL_S),
                     NJ_GATEWAY_PING_TIMEOUT_S=str(PING_TIMEOUT_S),
                     NJ_HISTORY_RETENTION_DAYS="1", NJ_HISTORY_RETENTION_INTERVAL_S="1")
    env.pop("NJ_E2E_HTTP_PORT")
    running = build_stack(env, Path(tempfile.mkdtemp(prefix="nj-e2e-")))
    try:
        yield start_stack(running)
    finally:
        running.stop_all()


@pytest.fixture
def small_queue_gateway(stack: Stack) -> Iterator[tuple[str, str]]:
    """A second gateway whose sockets queue few frames (and ping rarely); (api, ws url)."""
    http_port, ws_port = free_port(), free_port()
    stack.ports["gateway-small-queue"] = http_port
    stack.start("gateway", name="gateway-small-queue", env={
        "NJ_GATEWAY_HTTP_PORT": str(http_port), "NJ_GATEWAY_WS_PORT": str(ws_port),
        "NJ_GATEWAY_SEND_QUEUE": str(SMALL_QUEUE), "NJ_GATEWAY_PING_INTERVAL_S": "60"})
    try:
        stack.wait_ready("gateway-small-queue")
        yield f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}/ws"
    finally:
        stack.stop("gateway-small-queue")


async def _people(http: httpx.AsyncClient, *names: str) -> list[User]:
    return [await register_and_login(http, f"{name}_{secrets.token_hex(4)}") for name in names]


async def _chat(http: httpx.AsyncClient, owner: User, *others: User) -> str:
    body = {"type": "group", "members": [o.user_id for o in others]} if len(others) > 1 \
        else {"type": "direct", "members": [others[0].user_id]}
    answer = await http.post("/api/v1/chats", json=body, headers=owner.auth)
    assert answer.status_code == 201, answer.text
    return answer.json()["chat_id"]  # type: ignore[no-any-return]


def _socket(ws_url: str, user: User) -> Any:
    return open_websocket_url(f"{ws_url}?token={user.access_token}", message_queue_size=QUEUE)


async def _say(ws: WebSocketConnection, chat_id: str, content: str) -> int:
    await send(ws, {"type": "send_message", "id": secrets.token_hex(6), "chat_id": chat_id,
                    "content": content})
    return (await next_frame(ws, "message_ack"))["seq"]  # type: ignore[no-any-return]


async def _frames(ws: WebSocketConnection, chat_id: str, until: Any) -> AsyncIterator[dict[str, Any]]:
    while True:
        frame = await next_frame(ws, timeout=15)
        if frame.get("chat_id") == chat_id:
            yield frame
            if until(frame):
                return


async def _seqs_until(ws: WebSocketConnection, chat_id: str, seq: int) -> list[int]:
    """The chat's event seqs this socket gets until ``seq`` (repeats kept)."""
    return [f["seq"] async for f in _frames(ws, chat_id, lambda f: f.get("seq") == seq) if "seq" in f]


def _is_seq(chat_id: str, seq: int) -> Any:
    return lambda frame: frame.get("chat_id") == chat_id and frame.get("seq") == seq


async def test_a_vanished_peer_is_closed_and_its_events_come_on_reconnect(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        alice, gus = await _people(http, "alice", "gus")
        chat = await _chat(http, alice, gus)
        async with _socket(stack.ws_url, alice) as a_ws:
            ghost = await open_raw(gus.ws_url, gus.access_token)
            await ghost.frames_until(_is_seq(chat, 1), 15, pong=True)  # online and caught up
            await ghost.answer_next_ping(PING_INTERVAL_S + 5)
            dark_at = trio.current_time()  # from here gus answers nothing (no pong, no ack)
            said = [await _say(a_ws, chat, f"while gone {n}") for n in range(3)]
            frames, close = await ghost.frames_until_close(PING_INTERVAL_S + PING_TIMEOUT_S + 5)
            closed_after = trio.current_time() - dark_at
            await ghost.aclose()
        assert close.code == 4409, close
        assert closed_after < PING_INTERVAL_S + PING_TIMEOUT_S + 1.5, closed_after
        assert set(said) <= {f.get("seq") for f in frames}  # written to the dead socket, never acked
        await _until_offline(http, alice, gus)
        async with _socket(stack.ws_url, gus) as g_ws:
            assert set(said) <= set(await _seqs_until(g_ws, chat, said[-1]))


async def _until_offline(http: httpx.AsyncClient, asker: User, user: User) -> None:
    """The closed ghost no longer counts as a live device (well before the presence TTL)."""
    async def offline() -> bool:
        answer = await http.get(f"/api/v1/users/{user.user_id}/presence", headers=asker.auth)
        return answer.json()["status"] == "offline"  # type: ignore[no-any-return]
    await _poll(offline, 6)


async def test_a_client_that_stops_reading_is_closed_and_others_keep_receiving(stack, small_queue_gateway):
    """Requirements R4.2, R4.3: a client that cannot keep up is closed; others keep receiving."""
    api2, ws2 = small_queue_gateway
    async with httpx.AsyncClient(base_url=stack.api) as http, httpx.AsyncClient(base_url=api2) as ops:
        alice, slow, carol = await _people(http, "alice", "slow", "carol")
        chat = await _chat(http, alice, slow, carol)
        async with _socket(stack.ws_url, alice) as a_ws, _socket(ws2, carol) as c_ws:
            await _seqs_until(c_ws, chat, 1)
            lagging = await open_raw(ws2, slow.access_token, receive_buffer=4096)
            await lagging.frames_until(_is_seq(chat, 1), 15, pong=True)
            said: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lagging.read_slowly)  # far slower than the events come
                while await _connections(ops) == 2:
                    assert len(said) < 300, "the lagging socket was never closed"
                    said.append(await _say(a_ws, chat, BIG))
                    await _receive(c_ws, chat, said[-1])
                    await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            frames, close = await lagging.frames_until_close(10)
            await lagging.aclose()
            assert close.code == 4408, close
            assert len(said) > SMALL_QUEUE
            said.append(await _say(a_ws, chat, "still here"))
            await _receive(c_ws, chat, said[-1])


async def _receive(ws: WebSocketConnection, chat_id: str, seq: int) -> None:
    """A well-behaved client: gets the event next, in order, and acks it."""
    seqs = await _seqs_until(ws, chat_id, seq)
    assert seqs == sorted(set(seqs)), seqs  # nothing repeated, nothing out of order
    await send(ws, {"type": "ack", "chat_id": chat_id, "seq": seq})


async def _connections(ops: httpx.AsyncClient) -> float:
    text = (await ops.get("/metrics")).text
    found = re.search(r"^concurrent_websocket_connections (\S+)$", text, re.MULTILINE)
    assert found, text[:500]
    return float(found.group(1))


async def test_events_retention_deleted_are_announced_with_sync_required(stack, mysql_config):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        alice, gus = await _people(http, "alice", "gus")
        chat = await _chat(http, alice, gus)
        async with _socket(stack.ws_url, alice) as a_ws:
            said = [await _say(a_ws, chat, f"old news {n}") for n in range(3)]
        await _stored(http, alice, chat, said[-1])
        _age(mysql_config, chat, below=said[-1], days=3)
        await _trimmed(http, alice, chat, said[-1])
        async with _socket(stack.ws_url, gus) as g_ws:
            frames = [f async for f in _frames(g_ws, chat, lambda f: f["type"] == "sync_done")]
        assert [(f["type"], f.get("seq")) for f in frames] == [
            ("sync_required", None), ("new_message", said[-1]), ("sync_done", None)], frames
        assert frames[0]["retained_from_seq"] == said[-1]


async def _stored(http: httpx.AsyncClient, user: User, chat_id: str, seq: int) -> None:
    async def stored() -> bool:
        page = (await http.get(f"/api/v1/chats/{chat_id}/messages", headers=user.auth)).json()
        return any(e["seq"] == seq for e in page.get("events", ()))  # no chat yet: an error
    await _poll(stored, 10)


def _age(mysql_config, chat_id: str, below: int, days: int) -> None:
    """Make the chat's events below ``below`` look ``days`` old, as if time had passed."""
    conn = pymysql.connect(host=mysql_config.host, port=mysql_config.port, user=mysql_config.user,
                           password=mysql_config.password, database=mysql_config.database,
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("UPDATE history_messages SET ts = ts - %s WHERE chat_id = %s AND seq < %s",
                    (days * DAY_MS, chat_id, below))
    conn.close()


async def _trimmed(http: httpx.AsyncClient, user: User, chat_id: str, kept_from: int) -> None:
    """Wait for the retention sweep (every second in this stack) to delete the aged events."""
    async def trimmed() -> bool:
        page = (await http.get(f"/api/v1/chats/{chat_id}/messages?after_seq=0", headers=user.auth)).json()
        return page.get("retained_from_seq") == kept_from  # type: ignore[no-any-return]
    await _poll(trimmed, 15)


async def _poll(check: Any, timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.1)
