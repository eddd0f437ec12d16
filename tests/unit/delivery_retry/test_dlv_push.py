"""The pusher on trio's virtual clock: immediate first push, coalescing, Redis claims, drain."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
import trio
from prometheus_client import REGISTRY

from libs import contracts
from libs.cache import CacheUnavailable, Keys
from libs.config import ConfigError
from services.delivery_retry import config
from services.delivery_retry.push import Pusher
from services.delivery_retry.push_domain import preview

SETTINGS = config.load({}).push
SCHEMA = "schemas/nats/evt.push.json"


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, dict[str, Any], bool]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.sent.append((trio.current_time(), subject, orjson.loads(data), True))
        await trio.lowlevel.checkpoint()

    def publish_nowait(self, subject: str, data: bytes) -> None:
        self.sent.append((trio.current_time(), subject, orjson.loads(data), False))


class FakeCache:
    """SET NX PX and PTTL on a dict, on the virtual clock; ``down`` raises CacheUnavailable."""

    def __init__(self) -> None:
        self.keys = Keys("t:")
        self.expires: dict[str, float] = {}
        self.down = False

    def hold(self, user_id: str, seconds: float) -> None:
        self.expires[self.keys.push(user_id)] = trio.current_time() + seconds

    async def pipeline(self, build: Any) -> list[Any]:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise CacheUnavailable("redis unavailable")
        pipe = _Pipe(self, trio.current_time())
        build(pipe)
        return pipe.results


class _Pipe:
    def __init__(self, cache: FakeCache, now: float):
        self.cache, self.now = cache, now
        self.results: list[Any] = []

    def set(self, key: str, value: bytes, *, nx: bool, px: int) -> None:
        free = self.cache.expires.get(key, -1.0) <= self.now
        if free:
            self.cache.expires[key] = self.now + px / 1000
        self.results.append(True if free else None)

    def pttl(self, key: str) -> None:
        left = self.cache.expires.get(key, -1.0) - self.now
        self.results.append(round(left * 1000) if left > 0 else -2)


def message(seq: int, content: Any = "hello", **extra: Any) -> dict[str, Any]:
    return {"event": "message", "message_id": f"m{seq}", "chat_id": "c1", "seq": seq,
            "sender_id": "u9", "sender_device_id": "d1", "content_type": "text",
            "content_version": 1, "content": content, "ts": 1000 + seq, **extra}


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock(autojump_clock):
    return autojump_clock


async def test_first_message_goes_at_once_and_the_rest_together_at_interval_end(clock) -> None:
    bus = FakeBus()
    pusher = Pusher(bus, None, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        start = trio.current_time()
        pusher.notify("u1", message(1))
        await trio.sleep(0.1)
        for seq in (2, 3, 4):
            pusher.notify("u1", message(seq))
            await trio.sleep(0.2)
        await trio.sleep(2)
        await pusher.drain()
    assert [(at - start, subject, body["count"], body["message"]["seq"])
            for at, subject, body, _ in bus.sent] == [
        (0, "im.evt.push.u1", 1, 1), (pytest.approx(1.0), "im.evt.push.u1", 3, 4)]


async def test_payload_follows_the_contract(clock) -> None:
    bus = FakeBus()
    pusher = Pusher(bus, None, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        pusher.notify("u1", message(7, "  hi\n there  "))
        await pusher.drain()
    body = bus.sent[0][2]
    contracts.validator(SCHEMA)(body)
    assert body["user_id"] == "u1" and body["count"] == 1 and isinstance(body["ts"], int)
    assert body["message"] == {"message_id": "m7", "chat_id": "c1", "seq": 7, "sender_id": "u9",
                               "content_type": "text", "ts": 1007, "preview": "hi there"}


def test_preview_is_bounded_and_only_for_text() -> None:
    assert preview(message(1, "x" * 500), 100) == "x" * 99 + "…"
    assert preview(message(1, "short"), 100) == "short"
    assert preview(message(1, "text"), 0) is None
    assert preview(message(1, {"url": "u"}, content_type="image"), 100) is None


async def test_users_are_throttled_independently(clock) -> None:
    bus = FakeBus()
    pusher = Pusher(bus, None, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        pusher.notify("u1", message(1))
        pusher.notify("u2", message(2))
        await trio.sleep(0.01)
        assert sorted(s for _, s, _, _ in bus.sent) == ["im.evt.push.u1", "im.evt.push.u2"]
        await pusher.drain()


async def test_drain_publishes_what_waits_without_waiting_for_the_interval(clock) -> None:
    bus = FakeBus()
    pusher = Pusher(bus, None, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        for seq in (1, 2, 3):
            pusher.notify("u1", message(seq))
            await trio.sleep(0.1)
        start = trio.current_time()
        await pusher.drain()
        assert trio.current_time() - start < 0.01
    assert [body["count"] for _, _, body, _ in bus.sent] == [1, 2]
    assert pusher.queue_length() == 0


async def test_a_user_another_replica_pushed_to_waits_for_its_key(clock) -> None:
    bus, cache = FakeBus(), FakeCache()
    pusher = Pusher(bus, cache, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        start = trio.current_time()
        cache.hold("u1", 0.4)
        pusher.notify("u1", message(1))
        await trio.sleep(0.1)
        pusher.notify("u1", message(2))
        await trio.sleep(1)
        assert [(at - start, body["count"]) for at, _, body, _ in bus.sent] == [
            (pytest.approx(0.4), 2)]
        await pusher.drain()


async def test_without_redis_the_process_throttle_still_holds(clock) -> None:
    bus, cache = FakeBus(), FakeCache()
    cache.down = True
    before = counter("nj_dlv_push_redis_fallback_total")
    pusher = Pusher(bus, cache, SETTINGS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        for seq in (1, 2, 3):
            pusher.notify("u1", message(seq))
            await trio.sleep(0.3)
        await trio.sleep(1)
        await pusher.drain()
    assert [body["count"] for _, _, body, _ in bus.sent] == [1, 2]
    assert counter("nj_dlv_push_redis_fallback_total") == before + 1  # then Redis is skipped


async def test_beyond_max_users_the_window_ending_soonest_is_flushed_early(clock) -> None:
    bus = FakeBus()
    pusher = Pusher(bus, None, dataclasses.replace(SETTINGS, max_users=1))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(pusher.run)
        pusher.notify("u1", message(1))
        await trio.sleep(0.1)
        pusher.notify("u1", message(2))
        pusher.notify("u2", message(3))
        await trio.sleep(0.01)
        assert len(pusher.throttle) == 1
        await pusher.drain()
    assert [(s, body["count"], queued) for _, s, body, queued in bus.sent] == [
        ("im.evt.push.u1", 1, True), ("im.evt.push.u1", 1, False), ("im.evt.push.u2", 1, True)]


def test_settings_from_env() -> None:
    push = config.load({"NJ_DLV_PUSH_INTERVAL_S": "2.5",
                        "NJ_DLV_PUSH_WEBHOOK_URL": "http://127.0.0.1:9/push",
                        "NJ_DLV_PUSH_BREAKER_FAILURES": "2"}).push
    assert (push.interval_s, push.webhook_url, push.breaker_failures) == (
        2.5, "http://127.0.0.1:9/push", 2)
    assert (SETTINGS.interval_s, SETTINGS.webhook_url) == (1.0, "")


def test_bad_push_settings_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"NJ_DLV_PUSH_INTERVAL_S": "0", "NJ_DLV_PUSH_WEBHOOK_URL": "ftp://x",
                     "NJ_DLV_PUSH_WEBHOOK_RETRIES": "-1"})
    for name in ("NJ_DLV_PUSH_INTERVAL_S", "NJ_DLV_PUSH_WEBHOOK_URL",
                 "NJ_DLV_PUSH_WEBHOOK_RETRIES"):
        assert name in str(caught.value)
