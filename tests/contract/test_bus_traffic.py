"""What an operator sees on the bus (``nats sub 'im.>'``) is readable: JSON payloads with a
content type, trace ids on request traffic, stream dedup ids on IM_MESSAGES publishes.

Watches ``im.>`` while one user messages another over the running product.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from libs.bus import Message, open_bus
from tests.e2e.client import direct_pair, next_frame, send

pytestmark = pytest.mark.e2e
# Bus traffic caused by an HTTP request, and by WebSocket frames (im.gw.announce runs on a
# timer and im.evt.presence on connects and disconnects: no request to take a trace id from).
FROM_HTTP = ("im.auth.register", "im.auth.login", "im.router.chat.create")
FROM_WS = ("im.router.send", "im.dlv.ack", "im.dlv.sync", "im.history.page")


async def _exchange(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        a, b, chat_id = await direct_pair(http, "bt")
        async with open_websocket_url(f"{a.ws_url}?token={a.access_token}") as wa, \
                open_websocket_url(f"{b.ws_url}?token={b.access_token}") as wb:
            await send(wa, {"type": "send_message", "id": "t1", "chat_id": chat_id, "content": "on the bus"})
            await next_frame(wa, "message_ack")
            got = await next_frame(wb, "new_message")
            await send(wb, {"type": "ack", "chat_id": chat_id, "seq": got["seq"]})
            await next_frame(wa, "receipt")


async def _watch(url: str, api: str) -> list[Message]:
    """Everything on im.> while ``_exchange`` runs."""
    seen: list[Message] = []
    async with open_bus(url, name="contract-probe") as bus:
        sub = await bus.subscribe("im.>")
        await _exchange(api)
        with trio.move_on_after(0.5):  # what was queued, and the last deliveries
            async for msg in sub:
                seen.append(msg)
    return seen


@pytest.fixture(scope="module")
def seen(stack, stack_nats) -> list[Message]:
    return trio.run(_watch, stack_nats.url, stack.api)


def test_bus_messages_are_json_with_a_content_type(seen: list[Message]) -> None:
    assert not {"auth", "router", "msg", "gw", "dlv"} - {m.subject.split(".")[1] for m in seen}
    for msg in seen:
        assert isinstance(orjson.loads(msg.data), dict), (msg.subject, msg.data[:200])
        assert (msg.headers or {}).get("Content-Type") == "application/json", (msg.subject, msg.headers)
        if msg.subject.startswith("im.msg."):
            assert (msg.headers or {}).get("Nats-Msg-Id"), (msg.subject, msg.headers)


def _untraced(seen: list[Message], subjects: tuple[str, ...]) -> list[str]:
    """Subjects among ``subjects`` seen without a trace id (each must have been seen)."""
    assert all(any(m.subject.startswith(s) for m in seen) for s in subjects), subjects
    return sorted({m.subject for m in seen if m.subject.startswith(subjects)
                   and not (m.headers or {}).get("Nj-Trace-Id")})


def test_http_requests_and_what_follows_carry_a_trace_id(seen: list[Message]) -> None:
    assert not _untraced(seen, FROM_HTTP + ("im.msg.", "im.auth.users.exist"))


def test_websocket_frames_and_what_follows_carry_a_trace_id(seen: list[Message]) -> None:
    assert not _untraced(seen, FROM_WS)
