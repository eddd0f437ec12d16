"""Delivery guarantees through the running services: receipts, redelivery with backoff,
failure after the last attempt, the status API and push events for offline users.

The stack runs with a millisecond backoff and three attempts (configuration, not a test
path), so a device that never acks goes through the whole schedule in about a second.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from libs.bus import open_bus
from libs.natsd import NatsServer
from tests.stacks import running_stack
from tools.stack import Stack

from .client import User, direct_pair, next_frame, register_and_login, send

pytestmark = pytest.mark.e2e
BACKOFF = "0.15,0.2,0.25"
ATTEMPTS = 3


@pytest.fixture(scope="module")
def stack(common_env, stack_nats: NatsServer) -> Iterator[Stack]:
    with running_stack(common_env, stack_nats, NJ_DLV_BACKOFF_S=BACKOFF,
                       NJ_DLV_MAX_ATTEMPTS=str(ATTEMPTS), NJ_DLV_SCAN_INTERVAL_MS="20",
                       NJ_DLV_PUSH_INTERVAL_S="0.5", NJ_DLV_LEASE_S="1") as running:
        yield running


def _ws(stack: Stack, user: User) -> str:
    return f"{stack.ws_url}?token={user.access_token}"


async def _caught_up(ws: WebSocketConnection, chat_id: str) -> None:
    """Wait for the chat's catch-up on connect and ack it, as a client does."""
    done = await next_frame(ws, "sync_done")
    assert done["chat_id"] == chat_id
    await send(ws, {"type": "ack", "chat_id": chat_id, "seq": done["last_seq"]})


async def _send_text(ws: WebSocketConnection, chat_id: str, text: str) -> dict[str, Any]:
    frame_id = secrets.token_hex(6)
    await send(ws, {"type": "send_message", "id": frame_id, "chat_id": chat_id, "content": text})
    return await next_frame(ws, "message_ack")


async def _status(http: httpx.AsyncClient, user: User, message_id: str) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/messages/{message_id}/status", headers=user.auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _status_of(http: httpx.AsyncClient, asker: User, message_id: str, device: User,
                     want: str, timeout: float = 10) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            body = await _status(http, asker, message_id)
            mine = [r for r in body["recipients"]
                    if (r["user_id"], r["device_id"]) == (device.user_id, device.device_id)]
            if mine and mine[0]["status"] == want:
                return mine[0]
            await trio.sleep(0.05)


async def test_ack_sends_a_delivered_receipt_and_status_follows(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, chat = await direct_pair(http, "dl")
        async with open_websocket_url(_ws(stack, a)) as wa, open_websocket_url(_ws(stack, b)) as wb:
            await trio.sleep(0.3)  # both registered as online
            ack = await _send_text(wa, chat, "hello")
            got = await next_frame(wb, "new_message")
            assert got["seq"] == ack["seq"]
            await send(wb, {"type": "ack", "chat_id": chat, "seq": got["seq"]})
            receipt = await next_frame(wa, "receipt")
            assert receipt == {"type": "receipt", "chat_id": chat, "seq": ack["seq"],
                               "user_id": b.user_id, "device_id": b.device_id, "status": "delivered"}
            entry = await _status_of(http, a, ack["message_id"], b, "delivered")
            assert entry["attempts"] >= 1
            await send(wb, {"type": "read", "chat_id": chat, "seq": got["seq"]})
            await _status_of(http, a, ack["message_id"], b, "read")


async def test_unacked_delivery_is_resent_then_failed_and_arrives_on_reconnect(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, chat = await direct_pair(http, "dl")
        async with open_websocket_url(_ws(stack, a)) as wa:
            async with open_websocket_url(_ws(stack, b)) as wb:
                await _caught_up(wb, chat)
                await trio.sleep(0.3)
                ack = await _send_text(wa, chat, "are you there?")
                copies = []
                with trio.move_on_after(5):
                    while len(copies) < ATTEMPTS:  # the push, then each resend: never acked
                        copies.append(await next_frame(wb, "new_message"))
                assert [c["seq"] for c in copies] == [ack["seq"]] * ATTEMPTS
                failed = await next_frame(wa, "delivery_failed")
                assert failed == {"type": "delivery_failed", "message_id": ack["message_id"],
                                  "chat_id": chat, "seq": ack["seq"], "user_id": b.user_id,
                                  "device_id": b.device_id}
                entry = await _status_of(http, a, ack["message_id"], b, "failed")
                assert entry["attempts"] == ATTEMPTS
            async with open_websocket_url(_ws(stack, b)) as wb:  # the next connect still gets it
                got = await next_frame(wb, "new_message")
                assert got["message_id"] == ack["message_id"]
                await send(wb, {"type": "ack", "chat_id": chat, "seq": got["seq"]})
                await _status_of(http, a, ack["message_id"], b, "delivered")


async def test_the_schedule_survives_a_killed_delivery_retry(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, chat = await direct_pair(http, "dl")
        async with open_websocket_url(_ws(stack, a)) as wa, open_websocket_url(_ws(stack, b)) as wb:
            await _caught_up(wb, chat)
            await trio.sleep(0.3)
            ack = await _send_text(wa, chat, "still there?")
            await next_frame(wb, "new_message")
            # Projected (the status API knows it) and so scheduled: what the kill must not lose.
            # (A batch killed before its commit comes back after the consumer's ack_wait.)
            await _status_of(http, a, ack["message_id"], b, "pending")
            await trio.to_thread.run_sync(lambda: stack.stop("delivery_retry", kill=True))
            await trio.to_thread.run_sync(stack.start, "delivery_retry")
            await trio.to_thread.run_sync(stack.wait_ready, "delivery_retry")
            failed = await next_frame(wa, "delivery_failed", timeout=15)
            assert failed["message_id"] == ack["message_id"]
            entry = await _status_of(http, a, ack["message_id"], b, "failed")
            assert entry["attempts"] == ATTEMPTS


async def test_offline_device_stays_pending_and_its_user_gets_a_push(stack, stack_nats):
    async with httpx.AsyncClient(base_url=stack.api) as http, \
            open_bus(stack_nats.url, name="push-watch") as bus:
        a, b, chat = await direct_pair(http, "dl")
        pushes = await bus.subscribe(f"im.evt.push.{b.user_id}")
        async with open_websocket_url(_ws(stack, a)) as wa:
            first = await _send_text(wa, chat, "one")
            await _send_text(wa, chat, "two")
            with trio.fail_after(10):
                push = orjson.loads((await pushes.receive.receive()).data)
            assert push["user_id"] == b.user_id and push["count"] >= 1
            await trio.sleep(1.0)  # well past the whole backoff: an offline device never fails
            entry = await _status_of(http, a, first["message_id"], b, "pending")
            assert entry["attempts"] == 0


async def test_status_api_answers_members_only(stack):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, chat = await direct_pair(http, "dl")
        outsider = await register_and_login(http, f"dlo_{secrets.token_hex(4)}")
        async with open_websocket_url(_ws(stack, a)) as wa:
            ack = await _send_text(wa, chat, "private")
        await _status(http, b, ack["message_id"])
        denied = await http.get(f"/api/v1/messages/{ack['message_id']}/status", headers=outsider.auth)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == 4003
        missing = await http.get("/api/v1/messages/NOSUCHMESSAGE/status", headers=a.auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == 4004
