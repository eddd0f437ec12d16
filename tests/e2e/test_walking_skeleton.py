"""One message end to end through the five services running as processes."""

from __future__ import annotations

import secrets

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from libs.bus import open_bus
from libs.streams import STREAM

from .client import next_frame, register_and_login, send

pytestmark = pytest.mark.e2e


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


async def _chat(http: httpx.AsyncClient, owner, other) -> str:
    answer = await http.post("/api/v1/chats", json={"type": "direct", "members": [other.user_id]},
                             headers=owner.auth)
    assert answer.status_code == 201, answer.text
    again = await http.post("/api/v1/chats", json={"type": "direct", "members": [other.user_id]},
                            headers=owner.auth)
    assert again.status_code == 200 and again.json()["chat_id"] == answer.json()["chat_id"]
    return answer.json()["chat_id"]


async def _history(http: httpx.AsyncClient, user, chat_id: str, expected: int) -> list[dict]:
    with trio.fail_after(10):
        while True:
            page = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=user.auth)
            assert page.status_code == 200, page.text
            messages = [e for e in page.json()["events"] if e["type"] == "message"]
            if len(messages) >= expected:
                return messages
            await trio.sleep(0.05)


async def test_online_offline_and_history(stack, stack_nats):
    async with httpx.AsyncClient(base_url=stack.api) as http, \
            open_bus(stack_nats.url, name="e2e-probe") as bus:
        alice, bob, carol = [await register_and_login(http, _name(n)) for n in ("alice", "bob", "carol")]
        to_bob, to_carol = await _chat(http, alice, bob), await _chat(http, alice, carol)
        async with open_websocket_url(alice.ws_url, extra_headers=[("Authorization", f"Bearer {alice.access_token}")]) as a_ws, \
                open_websocket_url(f"{bob.ws_url}?token={bob.access_token}") as b_ws:
            await next_frame(b_ws, "sync_done")  # registered and caught up: live from here
            content = "hello bob ✓"
            await send(a_ws, {"type": "send_message", "id": "m1", "chat_id": to_bob, "content": content})
            ack = await next_frame(a_ws, "message_ack")
            stored = await bus.call_aio(bus.nc.jetstream().get_last_msg, STREAM, f"im.msg.{to_bob}")
            assert orjson.loads(stored.data)["seq"] == ack["seq"]  # acked only once durable
            got = await next_frame(b_ws, "new_message")
            assert (got["content"], got["seq"], got["sender_id"]) == (content, ack["seq"], alice.user_id)
            await send(b_ws, {"type": "ack", "chat_id": to_bob, "seq": got["seq"]})
            await send(b_ws, {"type": "ping"})
            assert (await next_frame(b_ws, "error", "pong"))["type"] == "pong"  # the ack was taken

            await send(a_ws, {"type": "send_message", "id": "m2", "chat_id": to_carol,
                              "content": "hello carol", "metadata": {"z": 1, "a": [1, 2]}})
            ack2 = await next_frame(a_ws, "message_ack")
        async with open_websocket_url(carol.ws_url, extra_headers=[("Authorization", f"Bearer {carol.access_token}")]) as c_ws:
            got = await next_frame(c_ws, "new_message")
            assert (got["content"], got["seq"], got["metadata"]) == ("hello carol", ack2["seq"], {"z": 1, "a": [1, 2]})
            assert list(got["metadata"]) == ["z", "a"]
        assert [m["content"] for m in await _history(http, bob, to_bob, 1)] == [content]
        assert [m["content"] for m in await _history(http, carol, to_carol, 1)] == ["hello carol"]


async def test_bad_frames_get_errors_and_the_socket_stays_up(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        dave = await register_and_login(http, _name("dave"))
        async with open_websocket_url(f"{dave.ws_url}?token={dave.access_token}") as ws:
            await ws.send_message("{not json")
            assert (await next_frame(ws, "error"))["code"] == 4000
            await send(ws, {"type": "teleport"})
            assert (await next_frame(ws, "error"))["code"] == 4002
            await send(ws, {"type": "send_message", "id": "x", "chat_id": "nochat", "content": "a" * 70_000})
            assert (await next_frame(ws, "error"))["code"] == 4013
            await send(ws, {"type": "send_message", "id": "y", "content": "no chat id"})
            error = await next_frame(ws, "error")
            assert error["code"] == 4000 and error["id"] == "y"
            await send(ws, {"type": "send_message", "id": "z", "chat_id": "nochat", "content": "hi"})
            assert (await next_frame(ws, "error"))["code"] == 4001
            await send(ws, {"type": "ping"})
            assert (await next_frame(ws, "pong"))["type"] == "pong"


async def test_bad_token_is_rejected_at_the_handshake(stack):
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{stack.ws_url}?token=not-a-token"):
            pass
    assert rejected.value.status_code == 401
    with pytest.raises(ConnectionRejected) as missing:
        async with open_websocket_url(stack.ws_url):
            pass
    assert missing.value.status_code == 401


async def test_bad_rest_input_gets_stable_codes(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        bad_json = await http.post("/api/v1/auth/register", content=b"{nope")
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == 4000
        not_object = await http.post("/api/v1/auth/register", json=[1, 2])
        assert not_object.status_code == 400 and not_object.json()["error"]["code"] == 4000
        erin, frank = await register_and_login(http, _name("erin")), await register_and_login(http, _name("frank"))
        taken = await http.post("/api/v1/auth/register", json={"username": erin.username.upper(),
                                                               "password": "whatever123"})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == 4009
        wrong = await http.post("/api/v1/auth/login", json={"username": erin.username, "password": "nope-nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == 4010
        chat = await _chat(http, erin, frank)
        for query in ("before_seq=abc", "limit=201", "after_seq=-1"):
            page = await http.get(f"/api/v1/chats/{chat}/messages?{query}", headers=erin.auth)
            assert page.status_code == 400 and page.json()["error"]["code"] == 4000, (query, page.text)
        no_token = await http.get(f"/api/v1/chats/{chat}/messages")
        assert no_token.status_code == 401 and no_token.json()["error"]["code"] == 4010
