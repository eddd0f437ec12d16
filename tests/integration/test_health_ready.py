"""/ready and /health per dependency: a real service (history: MySQL required, Redis
optional, NATS with JetStream) whose MySQL and Redis sit behind switchable proxies."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from libs.bus import open_bus
from libs.config import MySQLConfig
from libs.lifecycle import nats_probe
from libs.natsd import NatsServer, free_port, nats_server_binary
from services.history import app
from services.history.config import load
from tests.conftest import REDIS_URL
from tests.faultkit import Proxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mysql_proxy(mysql_config: MySQLConfig) -> Iterator[Proxy]:
    with Proxy(mysql_config.port, mysql_config.host) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy() -> Iterator[Proxy]:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with Proxy(port) as proxy:
        yield proxy


async def _reconnects(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "nj_bus_connection_events_total" and s.labels == {"event": "reconnected"})


@pytest.fixture
def nats_proxy(nats_server: NatsServer) -> Iterator[Proxy]:
    with Proxy(nats_server.port) as proxy:
        yield proxy


async def _until(client: httpx.AsyncClient, status: int, want: dict[str, Any],
                 timeout: float = 20.0) -> dict[str, Any]:
    """Poll /ready until it answers ``status`` with a body containing ``want``."""
    body: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            answer = await client.get("/ready")
            body = answer.json()
            if answer.status_code == status and _contains(body, want):
                return body
            await trio.sleep(0.2)
    raise AssertionError(f"/ready never answered {status} with {want}; last: {body}")


async def _switch(action: Callable[[], None]) -> None:
    """The proxy runs its own trio loop in a thread: switch it from a worker thread."""
    await trio.to_thread.run_sync(action)


def _contains(body: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(_contains(body.get(k, {}), v) if isinstance(v, dict) else body.get(k) == v
               for k, v in want.items())


def _config(common_env, mysql_proxy: Proxy, redis_proxy: Proxy, **extra: str):
    return load(common_env("history", NJ_MYSQL_PORT=str(mysql_proxy.port),
                           NJ_REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
                           NJ_REDIS_TIMEOUT_S="0.5", NJ_HISTORY_RETRY_MAX_MS="500", **extra))


async def test_ready_reports_each_dependency_and_recovers(common_env, mysql_proxy, redis_proxy):
    config = _config(common_env, mysql_proxy, redis_proxy)
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        async with httpx.AsyncClient(base_url=runtime.http_url, timeout=10) as client:
            body = await _until(client, 200, {"status": "ok"})
            assert body == {"service": "history", "status": "ok",
                            "checks": {"nats": "ok", "mysql": "ok", "redis": "ok"}}

            await _switch(redis_proxy.down)  # optional: still ready, degraded
            await _until(client, 200, {"status": "degraded", "checks": {"redis": "down",
                                                                         "mysql": "ok"}})
            await _switch(mysql_proxy.down)  # required: not ready
            body = await _until(client, 503, {"status": "down", "checks": {"mysql": "down"}})
            assert body["checks"] == {"nats": "ok", "mysql": "down", "redis": "down"}
            liveness = await client.get("/health")  # never probes, never fails
            assert liveness.status_code == 200 and liveness.json()["status"] == "down"

            await _switch(mysql_proxy.up)
            await _until(client, 200, {"status": "degraded", "checks": {"mysql": "ok"}})
            await _switch(redis_proxy.up)
            await _until(client, 200, {"status": "ok", "checks": {"redis": "ok"}})
        runtime.stopping.set()


async def test_hung_mysql_is_down_within_the_probe_timeout(common_env, mysql_proxy, redis_proxy):
    config = _config(common_env, mysql_proxy, redis_proxy)
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        async with httpx.AsyncClient(base_url=runtime.http_url, timeout=10) as client:
            await _until(client, 200, {"status": "ok"})
            await _switch(mysql_proxy.hang)
            await trio.sleep(1.1)  # past the cached answer
            started = trio.current_time()
            answer = await client.get("/ready")
            assert answer.status_code == 503 and answer.json()["checks"]["mysql"] == "down"
            assert trio.current_time() - started < 3.0
            await _switch(mysql_proxy.up)
            await _until(client, 200, {"status": "ok"})
        runtime.stopping.set()


async def test_exhausted_pool_is_degraded_not_down(common_env, mysql_proxy, redis_proxy):
    config = _config(common_env, mysql_proxy, redis_proxy, NJ_MYSQL_POOL_SIZE="1")
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        async with httpx.AsyncClient(base_url=runtime.http_url, timeout=10) as client:
            await _until(client, 200, {"status": "ok"})
            async with trio.open_nursery() as busy:
                for _ in range(2):  # one holds the only connection, one waits for it
                    busy.start_soon(runtime.db.execute, "SELECT SLEEP(3)")
                await trio.sleep(1.1)
                await _until(client, 200, {"status": "degraded", "checks": {"mysql": "degraded"}},
                             timeout=4)
            await _until(client, 200, {"status": "ok"})
        runtime.stopping.set()


async def test_draining_service_is_down_with_503(common_env, mysql_proxy, redis_proxy):
    config = _config(common_env, mysql_proxy, redis_proxy)
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        runtime.health.draining = True  # what SIGTERM sets first
        async with httpx.AsyncClient(base_url=runtime.http_url, timeout=10) as client:
            answer = await client.get("/ready")
        assert answer.status_code == 503
        assert answer.json()["status"] == "down" and answer.json()["checks"]["service"] == "draining"
        runtime.stopping.set()


async def test_lost_nats_is_down_and_comes_back(common_env, nats_proxy, mysql_proxy, redis_proxy):
    config = _config(common_env, mysql_proxy, redis_proxy,
                     NJ_NATS_URL=f"nats://127.0.0.1:{nats_proxy.port}")
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        async with httpx.AsyncClient(base_url=runtime.http_url, timeout=10) as client:
            await _until(client, 200, {"status": "ok"})
            reconnects = await _reconnects(client)
            await _switch(nats_proxy.down)
            body = await _until(client, 503, {"status": "down", "checks": {"nats": "down"}})
            assert body["checks"]["mysql"] == "ok"
            await _switch(nats_proxy.up)
            await _until(client, 200, {"status": "ok", "checks": {"nats": "ok"}})
            assert await _reconnects(client) > reconnects
        runtime.stopping.set()


async def test_nats_without_jetstream_is_degraded():
    port = free_port()
    server = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with open_bus(f"nats://127.0.0.1:{port}", name="probe", give_up_after=10) as bus:
            assert await nats_probe(bus, jetstream=True)() == "degraded"
            assert await nats_probe(bus, jetstream=False)() == "ok"
    finally:
        server.terminate()
        server.wait(10)
