"""Every kind of server frame, provoked once through the running product and checked against
proto/schemas/ws/server/<type>.json.

Three members of one group: alice sends, bob acks and reads, carol holds messages without
acking them, so alice's message ends in delivery_failed (the stack runs a short redelivery
schedule). ``void`` (a failed send) and ``sync_required`` (retention removed missed events)
need a broken dependency or an expired stream and are left to the tests of those paths; the
frames they do send pass the same validation in tests/e2e/client.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from tests.e2e.client import User, register_and_login, send, validate_frame

pytestmark = pytest.mark.e2e
ATTEMPTS = 2
STORED = ("new_message", "message_updated", "chat_updated", "void")
EXPECTED = {"message_ack", "new_message", "message_updated", "chat_updated", "receipt",
            "delivery_failed", "sync_done", "presence_update", "typing_indicator", "pong", "error"}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"NJ_DLV_BACKOFF_S": "0.1,0.15", "NJ_DLV_MAX_ATTEMPTS": str(ATTEMPTS),
            "NJ_DLV_SCAN_INTERVAL_MS": "20", "NJ_DLV_LEASE_S": "1"}


class Socket:
    """One connected device that validates and keeps every frame; acks stored events unless
    ``acks_messages`` is off (then it acks everything but new_message)."""

    def __init__(self, ws: WebSocketConnection, acks_messages: bool = True):
        self.ws, self.acks_messages = ws, acks_messages
        self.frames: list[dict[str, Any]] = []

    async def read(self) -> None:
        try:
            while True:
                frame = validate_frame(orjson.loads(await self.ws.get_message()))
                self.frames.append(frame)
                if frame["type"] in STORED and (self.acks_messages or frame["type"] != "new_message"):
                    await send(self.ws, {"type": "ack", "chat_id": frame["chat_id"], "seq": frame["seq"]})
        except ConnectionClosed:
            pass

    async def wait(self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda f: True,
                   timeout: float = 10) -> dict[str, Any]:
        with trio.move_on_after(timeout):
            while True:
                for frame in self.frames:
                    if frame["type"] == kind and match(frame):
                        return frame
                await trio.sleep(0.01)
        raise AssertionError(f"no such {kind} frame within {timeout} s; got {self.frames}")


async def _group(http: httpx.AsyncClient) -> tuple[list[User], str]:
    users = [await register_and_login(http, f"wf_{n}_{secrets.token_hex(4)}") for n in "abc"]
    chat = await http.post("/api/v1/chats", headers=users[0].auth, json={
        "type": "group", "name": "frames", "members": [u.user_id for u in users[1:]]})
    assert chat.status_code == 201, chat.text
    return users, chat.json()["chat_id"]


async def _connect(nursery: trio.Nursery, url: str, user: User, chat_id: str,
                   acks_messages: bool = True) -> Socket:
    ws = await connect_websocket_url(nursery, f"{url}?token={user.access_token}")
    socket = Socket(ws, acks_messages)
    nursery.start_soon(socket.read)
    await send(ws, {"type": "sync", "chat_id": chat_id, "after_seq": 0})  # caught up whatever the timing
    await socket.wait("sync_done")
    return socket


async def _messaging(http: httpx.AsyncClient, chat: str, users: list[User], a: Socket, b: Socket) -> None:
    await send(a.ws, {"type": "send_message", "id": "f1", "chat_id": chat, "content": "frames"})
    ack = await a.wait("message_ack")
    await b.wait("new_message", lambda f: f["seq"] == ack["seq"])
    await a.wait("receipt", lambda f: f["status"] == "delivered")
    await send(b.ws, {"type": "read", "chat_id": chat, "seq": ack["seq"]})
    await a.wait("receipt", lambda f: f["status"] == "read")
    # Before the edit: carol's (cumulative) ack of the message_updated event would cover the message.
    await a.wait("delivery_failed", lambda f: f["user_id"] == users[2].user_id, timeout=20)
    edit = await http.patch(f"/api/v1/chats/{chat}/messages/{ack['seq']}", headers=users[0].auth,
                            json={"content": "frames, edited"})
    assert edit.status_code == 200, edit.text
    await b.wait("message_updated")


async def _ephemeral(http: httpx.AsyncClient, chat: str, users: list[User], a: Socket, b: Socket) -> None:
    await send(a.ws, {"type": "start_typing", "chat_id": chat})
    await b.wait("typing_indicator")
    await send(a.ws, {"type": "ping"})
    await a.wait("pong")
    await a.ws.send_message("{not json")
    await a.wait("error")
    renamed = await http.patch(f"/api/v1/chats/{chat}", headers=users[0].auth, json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    await b.wait("chat_updated", lambda f: f.get("kind") == "renamed")


async def test_every_server_frame_kind_conforms_to_its_schema(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http, trio.open_nursery() as nursery:
        users, chat = await _group(http)
        a = await _connect(nursery, stack.ws_url, users[0], chat)
        b = await _connect(nursery, stack.ws_url, users[1], chat)
        c = await _connect(nursery, stack.ws_url, users[2], chat, acks_messages=False)
        await a.wait("presence_update", lambda f: f["user_id"] == users[1].user_id)
        await _messaging(http, chat, users, a, b)
        await _ephemeral(http, chat, users, a, b)
        seen = {f["type"] for s in (a, b, c) for f in s.frames}
        assert not EXPECTED - seen, f"never provoked: {EXPECTED - seen}"
        for socket in (a, b, c):
            await socket.ws.aclose()
        nursery.cancel_scope.cancel()
