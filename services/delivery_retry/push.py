"""Push events for offline recipients: ``im.evt.push.<user_id>``, coalesced per user.

The stream consumer calls :meth:`Pusher.notify` once per (offline recipient, new message);
it only counts, in memory, and never waits. One task publishes what the throttle says is
due (:class:`push_domain.Throttle`: the first message of a quiet user at once, the rest
coalesced into one push when the interval ends). Several replicas share the limit through
Redis: a push goes out only if ``SET dlv:push:<user> NX PX <interval>`` succeeds; otherwise
another replica pushed recently and the messages wait until that key expires. Without
Redis (no cache, or CacheUnavailable) each replica throttles on its own.

Every published push is also offered to the webhook sink when one is configured.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import redis.exceptions
import trio
from prometheus_client import Counter, Gauge

from libs import ids, log
from libs.bus import Bus
from libs.cache import Cache, CacheUnavailable

from .config import PushSettings
from .push_domain import Push, Throttle, payload, summarize
from .push_webhook import WebhookSink

logger = log.get("delivery_retry.push")
SUBJECT = "im.evt.push.{user_id}"
NOTIFIED = Counter("nj_dlv_push_notifications_total",
                   "Messages for offline recipients handed to the pusher")
PUBLISHED = Counter("nj_dlv_push_published_total", "Push events published on NATS", ["path"])
DEFERRED = Counter("nj_dlv_push_deferred_total",
                   "Pushes held back because another replica pushed to the user this interval")
REDIS_FALLBACK = Counter("nj_dlv_push_redis_fallback_total",
                         "Push batches throttled in process only because Redis was unavailable")
QUEUE_LENGTH = Gauge("push_notification_queue_length",
                     "Pushes waiting: users with coalesced messages plus the webhook queue")
REDIS_PAUSE_S = 5.0  # after a Redis failure, skip it this long instead of stalling each batch
MIN_DEFER_S = 0.01


class Pusher:
    def __init__(self, bus: Bus, cache: Cache | None, settings: PushSettings):
        self.bus = bus
        self.cache = cache
        self.settings = settings
        self.throttle = Throttle(settings.interval_s, settings.max_users)
        self.webhook = WebhookSink(settings) if settings.webhook_url else None
        self._wake = trio.Event()
        self._draining = False
        self._started = False
        self._stopped = trio.Event()
        self._redis_paused_until = -math.inf
        QUEUE_LENGTH.set_function(self.queue_length)

    def queue_length(self) -> int:
        return self.throttle.waiting + (len(self.webhook) if self.webhook else 0)

    def notify(self, user_id: str, event: dict[str, Any]) -> None:
        """Count a new message for an offline user; never blocks."""
        NOTIFIED.inc()
        message = summarize(event, self.settings.preview_chars)
        for push in self.throttle.offer(user_id, message, trio.current_time()):
            # Flushed early to keep the throttle within max_users; no Redis claim here.
            self._publish_nowait(push, "evicted")
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish pushes as they fall due until :meth:`drain`."""
        self._started = True
        try:
            async with trio.open_nursery() as nursery:
                if self.webhook is not None:
                    await nursery.start(self.webhook.run)
                task_status.started()
                await self._push_until_drained()
                if self.webhook is not None:
                    await self.webhook.close()
        finally:
            self._stopped.set()

    async def drain(self) -> None:
        """Publish every waiting push now (windows or not), let the webhook finish, stop."""
        self._draining = True
        self._wake.set()
        if self._started:
            await self._stopped.wait()
        else:
            for push in self.throttle.drain():
                await self._publish(push, "drain")

    async def _push_until_drained(self) -> None:
        while not self._draining:
            self._wake = trio.Event()
            await self._push_due()
            due = self.throttle.next_due()
            with trio.move_on_at(math.inf if due is None else due):
                await self._wake.wait()
        for push in self.throttle.drain():
            await self._publish(push, "drain")

    async def _push_due(self) -> None:
        pushes = self.throttle.due(trio.current_time())
        if pushes:
            for push in await self._claim(pushes):
                await self._publish(push, "due")

    async def _claim(self, pushes: list[Push]) -> list[Push]:
        """The pushes this replica may send (Redis SET NX); the others go back to wait."""
        if self.cache is None or trio.current_time() < self._redis_paused_until:
            return pushes
        try:
            results = await self.cache.pipeline(self._claims(pushes))
        except (CacheUnavailable, redis.exceptions.RedisError) as exc:
            self._redis_paused_until = trio.current_time() + REDIS_PAUSE_S
            REDIS_FALLBACK.inc()
            logger.warning("dlv.push_redis_unavailable", error=repr(exc), pause_s=REDIS_PAUSE_S)
            return pushes
        return self._keep_claimed(pushes, results[0::2], results[1::2])

    def _claims(self, pushes: list[Push]) -> Any:
        assert self.cache is not None
        keys = [self.cache.keys.push(push.user_id) for push in pushes]
        interval_ms = max(1, round(self.settings.interval_s * 1000))

        def build(pipe: Any) -> None:
            for key in keys:
                pipe.set(key, b"1", nx=True, px=interval_ms)
                pipe.pttl(key)
        return build

    def _keep_claimed(self, pushes: list[Push], claimed: list[Any], ttl_ms: list[Any]
                      ) -> list[Push]:
        now, kept = trio.current_time(), []
        for push, won, ttl in zip(pushes, claimed, ttl_ms, strict=True):
            if won:
                kept.append(push)
                continue
            self.throttle.defer(push, now + self._held_for(ttl))
            DEFERRED.inc()
        return kept

    def _held_for(self, ttl_ms: int) -> float:
        """Seconds until another replica's claim ends (PTTL: -2 gone already, -1 no expiry)."""
        if ttl_ms == -1:
            return self.settings.interval_s
        return max(MIN_DEFER_S, ttl_ms / 1000)

    async def _publish(self, push: Push, path: str) -> None:
        body = self._encode(push)
        await self.bus.publish(SUBJECT.format(user_id=push.user_id), body)
        self._published(body, path)

    def _publish_nowait(self, push: Push, path: str) -> None:
        body = self._encode(push)
        self.bus.publish_nowait(SUBJECT.format(user_id=push.user_id), body)
        self._published(body, path)

    def _encode(self, push: Push) -> bytes:
        return orjson.dumps(payload(push, ids.now_ms()))

    def _published(self, body: bytes, path: str) -> None:
        PUBLISHED.labels(path).inc()
        if self.webhook is not None:
            self.webhook.offer(body)
