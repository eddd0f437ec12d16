"""The optional webhook sink: every push is POSTed as JSON to NJ_DLV_PUSH_WEBHOOK_URL.

Real push providers (APNs, FCM, ...) sit behind that URL. The sink must never slow the
stream consumer or the NATS publish, so pushes wait in a bounded queue and are dropped
(and counted) when it is full. A few workers POST them with retries (exponential backoff,
full jitter); a circuit breaker stops calling an endpoint that keeps failing and lets one
probe through after the cool-down.
"""

from __future__ import annotations

import random

import httpx
import trio
from prometheus_client import Counter, Gauge

from libs import log

from .config import PushSettings
from .push_domain import BreakerState, CircuitBreaker, backoff

logger = log.get("delivery_retry.push_webhook")
SENT = Counter("nj_dlv_push_webhook_sent_total", "Pushes the webhook accepted (2xx)")
FAILED = Counter("nj_dlv_push_webhook_failed_total",
                 "Pushes given up after the last retry, or refused by the webhook (4xx)")
DROPPED = Counter("nj_dlv_push_webhook_dropped_total", "Pushes never POSTed", ["reason"])
BREAKER = Gauge("nj_dlv_push_webhook_breaker_state",
                "Webhook circuit breaker: 0 closed, 1 half-open (probing), 2 open")
BREAKER_OPENED = Counter("nj_dlv_push_webhook_breaker_opened_total", "Times the breaker opened")
# Statuses worth retrying; any other 4xx means the body itself was refused.
RETRYABLE_4XX = frozenset({408, 425, 429})


class WebhookSink:
    def __init__(self, settings: PushSettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 rng: random.Random | None = None):
        self.settings = settings
        self.transport = transport
        self.rng = rng or random.Random()
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self._send, self._receive = trio.open_memory_channel[bytes](settings.webhook_queue)
        BREAKER.set(BreakerState.CLOSED)

    async def health(self) -> str:
        """``ok`` while the breaker is closed; ``degraded`` while it is open or probing."""
        return "ok" if self.breaker.state is BreakerState.CLOSED else "degraded"

    def __len__(self) -> int:
        return self._send.statistics().current_buffer_used

    def offer(self, body: bytes) -> None:
        """Queue one push body; never blocks (a full queue drops it)."""
        try:
            self._send.send_nowait(body)
        except trio.WouldBlock:
            DROPPED.labels("queue_full").inc()
        except trio.ClosedResourceError:
            DROPPED.labels("closed").inc()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """POST queued pushes until :meth:`close` and the queue is empty."""
        client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s,
                                   transport=self.transport)
        async with client, trio.open_nursery() as nursery:
            async with self._receive:  # the workers' clones keep the channel open
                for _ in range(self.settings.webhook_concurrency):
                    nursery.start_soon(self._worker, client, self._receive.clone())
            task_status.started()

    async def close(self) -> None:
        """Take no more pushes; the workers finish the queued ones, then :meth:`run` returns."""
        await self._send.aclose()

    async def _worker(self, client: httpx.AsyncClient,
                      receive: trio.MemoryReceiveChannel[bytes]) -> None:
        async with receive:
            async for body in receive:
                await self._deliver(client, body)

    async def _deliver(self, client: httpx.AsyncClient, body: bytes) -> None:
        for attempt in range(self.settings.webhook_retries + 1):
            if attempt:
                await trio.sleep(backoff(attempt, self.settings.webhook_backoff_s, self.rng))
            if not self.breaker.allow(trio.current_time()):
                self._refused(attempt)
                return
            BREAKER.set(self.breaker.state)
            outcome = await self._post(client, body)
            if outcome != "retry":
                self._settle(outcome)
                return
            self._failed_attempt()
        FAILED.inc()

    def _refused(self, attempt: int) -> None:
        """The breaker is open: a push already tried counts as failed, else as dropped."""
        if attempt:
            FAILED.inc()
        else:
            DROPPED.labels("circuit_open").inc()

    def _settle(self, outcome: str) -> None:
        # The endpoint answered: it is up, whether it took the body ("sent") or not.
        self.breaker.success()
        BREAKER.set(self.breaker.state)
        (SENT if outcome == "sent" else FAILED).inc()

    def _failed_attempt(self) -> None:
        if self.breaker.failure(trio.current_time()):
            BREAKER_OPENED.inc()
            logger.warning("dlv.push_webhook_breaker_open", failures=self.breaker.failures,
                           cooldown_s=self.breaker.cooldown)
        BREAKER.set(self.breaker.state)

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> str:
        """One POST: "sent", "refused" (a 4xx retrying cannot fix) or "retry"."""
        try:
            response = await client.post(self.settings.webhook_url, content=body,
                                         headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            logger.info("dlv.push_webhook_error", error=repr(exc))
            return "retry"
        if response.is_success:
            return "sent"
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
            logger.warning("dlv.push_webhook_refused", status=response.status_code)
            return "refused"
        return "retry"
