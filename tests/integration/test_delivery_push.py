"""Push events end to end: a real nats-server and Redis, a local HTTP server as the webhook."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

from libs import contracts
from libs.bus import Bus, open_bus
from libs.cache import Cache
from libs.natsd import NatsServer
from services.delivery_retry import config
from services.delivery_retry.push import Pusher
from services.delivery_retry.push_domain import BreakerState

INTERVAL = 0.5


class WebhookServer:
    """A bare HTTP/1.1 server on 127.0.0.1, port 0, answering every POST with ``status``."""

    def __init__(self, status: int = 200):
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.url = ""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/push"
        task_status.started()
        await trio.serve_listeners(self._answer, listeners)

    async def _answer(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return  # the client went away mid-request
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += await stream.receive_some(65536)
            self.bodies.append(orjson.loads(body))
            await stream.send_all(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n"
                                  "connection: close\r\n\r\n".encode())


def settings(webhook_url: str, **overrides: Any) -> config.PushSettings:
    base = config.load({"NJ_DLV_PUSH_INTERVAL_S": str(INTERVAL),
                        "NJ_DLV_PUSH_WEBHOOK_URL": webhook_url}).push
    return dataclasses.replace(base, **overrides)


def message(user: str, seq: int) -> dict[str, Any]:
    return {"event": "message", "message_id": f"m{seq}", "chat_id": "c1", "seq": seq,
            "sender_id": user, "sender_device_id": "d1", "content_type": "text",
            "content_version": 1, "content": f"hello {seq}", "ts": seq}


@asynccontextmanager
async def subscribed(bus: Bus, into: list[dict[str, Any]]) -> AsyncIterator[None]:
    sub = await bus.subscribe("im.evt.push.>")

    async def collect() -> None:
        async for msg in sub:
            into.append(orjson.loads(msg.data))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        yield
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()


async def test_two_replicas_push_once_per_interval_to_nats_and_the_webhook(
        nats_server: NatsServer, redis_url: str, redis_prefix: str) -> None:
    user, webhook = "u" + secrets.token_hex(4), WebhookServer()
    received: list[dict[str, Any]] = []
    cache = Cache(redis_url, redis_prefix)
    validate = contracts.validator("schemas/nats/evt.push.json")
    async with open_bus(nats_server.url, name="push-test") as bus, trio.open_nursery() as nursery:
        await nursery.start(webhook.serve)
        replicas = [Pusher(bus, cache, settings(webhook.url)) for _ in range(2)]
        for pusher in replicas:
            await nursery.start(pusher.run)
        async with subscribed(bus, received):
            for seq in range(1, 7):  # the replicas take turns, as with a shared consumer
                replicas[seq % 2].notify(user, message("s1", seq))
                await trio.sleep(0.1)
            await trio.sleep(INTERVAL * 3)
        for pusher in replicas:
            await pusher.drain()
        nursery.cancel_scope.cancel()
    cache.close()
    for body in received:
        validate(body)
    assert sum(body["count"] for body in received) == 6
    # Each replica coalesces what it saw, so "newest" is per replica; seq 6 is in some push.
    assert received[0]["count"] == 1 and max(b["message"]["seq"] for b in received) == 6
    stamps = [body["ts"] for body in received]
    assert all(b - a >= INTERVAL * 1000 - 20 for a, b in zip(stamps, stamps[1:], strict=False))
    assert sorted(b["ts"] for b in webhook.bodies) == sorted(stamps)


async def test_a_failing_webhook_opens_the_breaker_and_nats_pushes_go_on(
        nats_server: NatsServer) -> None:
    received: list[dict[str, Any]] = []
    webhook = WebhookServer(status=500)
    async with open_bus(nats_server.url, name="push-test") as bus, trio.open_nursery() as nursery:
        await nursery.start(webhook.serve)
        pusher = Pusher(bus, None, settings(webhook.url, webhook_retries=1,
                                             webhook_backoff_s=0.01, webhook_concurrency=1,
                                             breaker_failures=2, breaker_cooldown_s=60))
        await nursery.start(pusher.run)
        async with subscribed(bus, received):
            for n in range(4):
                pusher.notify(f"u{n}-{secrets.token_hex(3)}", message("s1", n + 1))
                await trio.sleep(0.3)
        assert pusher.webhook is not None and pusher.webhook.breaker.state is BreakerState.OPEN
        await pusher.drain()
        nursery.cancel_scope.cancel()
    assert len(received) == 4  # NATS publishing never waited for the webhook
    assert len(webhook.bodies) == 2  # one push, retried once; the breaker then refused the rest
