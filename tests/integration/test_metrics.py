"""Every service's /metrics on a running stack, after some traffic: the key metrics exist on
the service that feeds them, with values that match what the test did."""

from __future__ import annotations

import math

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from tests.e2e.client import direct_pair, next_frame, send
from tools.stack import SERVICES, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
MESSAGES = 5
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(stack: Stack, service: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{stack.ports[service]}/metrics")
    assert answer.status_code == 200, answer.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} missing"
    return samples[key]


async def eventually(stack: Stack, service: str, name: str, check, timeout: float = 20,
                     **labels: str) -> float:
    """The sample's value once ``check(value)`` holds (metrics polled or windowed lag)."""
    seen = None
    with trio.move_on_after(timeout):
        while True:
            samples = await scrape(stack, service)
            seen = samples.get((name, frozenset(labels.items())))
            if seen is not None and check(seen):
                return seen
            await trio.sleep(0.5)
    raise AssertionError(f"{service}: {name}{labels} = {seen}, never passed the check")


async def test_key_metrics_on_each_service(stack: Stack):
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
        ann, bob, chat_id = await direct_pair(http, "mx")
        async with open_websocket_url(f"{ann.ws_url}?token={ann.access_token}") as a_ws, \
                open_websocket_url(f"{bob.ws_url}?token={bob.access_token}") as b_ws, \
                open_websocket_url(f"{bob.ws_url}?token={bob.access_token}") as b_again:
            for ws in (a_ws, b_ws, b_again):
                await next_frame(ws, "sync_done")
            for i in range(MESSAGES):
                await send(a_ws, {"type": "send_message", "id": f"m{i}", "chat_id": chat_id,
                                  "content": f"hi {i}"})
                await next_frame(a_ws, "message_ack")
                await next_frame(b_ws, "new_message")
            gateway = await scrape(stack, "gateway")
            assert value(gateway, "concurrent_websocket_connections") == 3
            assert value(gateway, "messages_out_total") >= 2 * MESSAGES
            assert value(gateway, "p99_message_delivery_latency_count") >= MESSAGES
            assert value(gateway, "p99_message_delivery_latency_bucket", le="+Inf") >= MESSAGES
            for service, direction in (("gateway", "out"), ("router", "in")):
                await eventually(stack, service, "messages_per_second", lambda v: v > 0,
                                 direction=direction)
        page = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=bob.auth)
        assert page.status_code == 200, page.text

    await eventually(stack, "gateway", "concurrent_websocket_connections", lambda v: v == 0)
    router = await scrape(stack, "router")
    assert value(router, "messages_in_total") == MESSAGES

    auth = await scrape(stack, "auth")
    hits = value(auth, "nj_cache_lookups_total", cache="auth_session", result="hit")
    misses = value(auth, "nj_cache_lookups_total", cache="auth_session", result="miss")
    assert hits >= 1 and misses >= 1  # bob's second socket checks a session cached by his first
    assert value(auth, "session_store_hit_ratio") == pytest.approx(hits / (hits + misses))

    retry = await scrape(stack, "delivery_retry")
    assert value(retry, "push_notification_queue_length") >= 0
    for service, consumer in (("history", "history"), ("delivery_retry", "delivery-retry")):
        await eventually(stack, service, "nj_jetstream_consumer_pending", lambda v: v == 0,
                         consumer=consumer)
    history = await scrape(stack, "history")
    assert value(history, "nj_history_rows_written_total") >= MESSAGES
    assert 0 <= value(history, "nj_cache_hit_ratio", cache="history") <= 1


async def test_runtime_metrics_on_every_service(stack: Stack):
    for service in SERVICES:
        async with httpx.AsyncClient(timeout=10) as http:  # /ready probes: nj_dependency_state
            assert (await http.get(f"http://127.0.0.1:{stack.ports[service]}/ready")).status_code == 200
        samples = await scrape(stack, service)
        assert value(samples, "nj_bus_published_total") > 0, service
        assert value(samples, "nj_bus_requests_total") >= 0, service
        assert value(samples, "nj_bus_request_timeouts_total") >= 0, service
        assert value(samples, "nj_bus_outbox_length") >= 0, service
        assert value(samples, "nj_dependency_state", dependency="nats") == 2, service
        assert not math.isnan(value(samples, "messages_per_second", direction="in"))
        if service != "gateway":  # the gateway has no MySQL
            assert value(samples, "nj_db_pool_size") == 8, service
            assert value(samples, "nj_db_pool_in_use") >= 0, service
            assert value(samples, "nj_db_pool_waits_total") >= 0, service
            assert value(samples, "nj_dependency_state", dependency="mysql") == 2, service
