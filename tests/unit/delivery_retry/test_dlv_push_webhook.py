"""The webhook sink on trio's virtual clock: retries with backoff, the breaker, the bounded queue."""

from __future__ import annotations

import dataclasses
import random

import httpx
import pytest
import trio
from prometheus_client import REGISTRY

from services.delivery_retry import config
from services.delivery_retry.push_domain import BreakerState, CircuitBreaker, backoff
from services.delivery_retry.push_webhook import WebhookSink

URL = "http://webhook.test/push"
SETTINGS = dataclasses.replace(
    config.load({}).push, webhook_url=URL, webhook_retries=2, webhook_backoff_s=0.5,
    webhook_concurrency=1, breaker_failures=3, breaker_cooldown_s=10.0, webhook_queue=4)


class Endpoint:
    """A scripted webhook: answers the listed statuses in turn, then ``then``."""

    def __init__(self, statuses: list[int], then: int = 200):
        self.statuses, self.then = list(statuses), then
        self.calls: list[tuple[float, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await trio.sleep(0.01)
        self.calls.append((trio.current_time(), request.content))
        return httpx.Response(self.statuses.pop(0) if self.statuses else self.then)


def sink_for(endpoint: Endpoint, **overrides: object) -> WebhookSink:
    settings = dataclasses.replace(SETTINGS, **overrides)  # type: ignore[arg-type]
    return WebhookSink(settings, transport=httpx.MockTransport(endpoint), rng=random.Random(7))


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock(autojump_clock):
    return autojump_clock


async def test_a_push_is_posted_as_is(clock) -> None:
    endpoint, sent = Endpoint([]), value("nj_dlv_push_webhook_sent_total")
    sink = sink_for(endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        sink.offer(b'{"user_id":"u1"}')
        await sink.close()
    assert [body for _, body in endpoint.calls] == [b'{"user_id":"u1"}']
    assert value("nj_dlv_push_webhook_sent_total") == sent + 1


async def test_failures_are_retried_with_growing_jittered_backoff(clock) -> None:
    endpoint = Endpoint([503, 500])
    sink = sink_for(endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        sink.offer(b"{}")
        await sink.close()
    times = [at for at, _ in endpoint.calls]
    assert len(times) == 3 and sink.breaker.state is BreakerState.CLOSED
    assert 0 <= times[1] - times[0] - 0.01 <= 0.5 and 0 <= times[2] - times[1] - 0.01 <= 1.0


async def test_a_refused_body_is_not_retried(clock) -> None:
    endpoint, failed = Endpoint([400]), value("nj_dlv_push_webhook_failed_total")
    sink = sink_for(endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        sink.offer(b"{}")
        await sink.close()
    assert len(endpoint.calls) == 1 and value("nj_dlv_push_webhook_failed_total") == failed + 1


async def test_breaker_opens_drops_then_lets_one_probe_through(clock) -> None:
    endpoint = Endpoint([], then=500)
    dropped = value("nj_dlv_push_webhook_dropped_total", reason="circuit_open")
    sink = sink_for(endpoint, webhook_retries=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        for _ in range(5):
            sink.offer(b"{}")
            await trio.sleep(0.1)
        assert len(endpoint.calls) == 3 and sink.breaker.state is BreakerState.OPEN
        assert value("nj_dlv_push_webhook_dropped_total", reason="circuit_open") == dropped + 2
        assert value("nj_dlv_push_webhook_breaker_state") == BreakerState.OPEN
        await trio.sleep(10)
        endpoint.then = 200
        sink.offer(b"{}")
        await trio.sleep(0.1)
        assert len(endpoint.calls) == 4 and sink.breaker.state is BreakerState.CLOSED
        await sink.close()


async def test_a_failed_probe_opens_the_breaker_again(clock) -> None:
    endpoint = Endpoint([], then=500)
    sink = sink_for(endpoint, webhook_retries=0, breaker_failures=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        sink.offer(b"{}")
        await trio.sleep(10.5)
        sink.offer(b"{}")
        await trio.sleep(0.1)
        sink.offer(b"{}")
        await trio.sleep(0.1)
        assert len(endpoint.calls) == 2 and sink.breaker.state is BreakerState.OPEN
        await sink.close()


async def test_a_full_queue_drops_and_counts(clock) -> None:
    endpoint = Endpoint([])
    dropped = value("nj_dlv_push_webhook_dropped_total", reason="queue_full")
    sink = sink_for(endpoint)
    for _ in range(6):  # not running yet: the queue (4) fills
        sink.offer(b"{}")
    assert len(sink) == 4
    assert value("nj_dlv_push_webhook_dropped_total", reason="queue_full") == dropped + 2
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await sink.close()
    assert len(endpoint.calls) == 4


def test_breaker_counts_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=5)
    assert breaker.failure(0) is False
    breaker.success()
    assert breaker.failure(1) is False and breaker.allow(1)
    assert breaker.failure(2) is True and not breaker.allow(6.9)
    assert breaker.allow(7) and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(7)  # one probe at a time
    breaker.success()
    assert breaker.allow(7) and breaker.state is BreakerState.CLOSED


def test_backoff_stays_under_its_doubling_ceiling() -> None:
    rng = random.Random(1)
    for retry in range(1, 8):
        assert all(0 <= backoff(retry, 0.5, rng) <= 0.5 * 2 ** (retry - 1) for _ in range(50))
