"""Running a service: open its dependencies, start it, drain it on SIGTERM within a deadline.

The order is the hypercorn model: nested nurseries, outermost the dependencies (bus, db,
cache), then the ops HTTP server, then the service's own tasks. Shutdown unwinds from the
inside out: stop taking work (``/ready`` turns 503), let the service drain in-flight work
until the deadline, then cancel what is left and close the dependencies.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from . import log
from .bus import Bus, open_bus
from .cache import Cache
from .config import CommonConfig
from .db import Database
from .health import Health
from .http import build_app, serve_http

logger = log.get("lifecycle")


@dataclass
class Runtime:
    """What a service's wiring gets: its config and its open dependencies."""

    config: CommonConfig
    bus: Bus
    health: Health
    db: Database | None = None
    cache: Cache | None = None
    http_url: str = ""
    app: Any = None  # the Starlette app on the HTTP port; a service may add routes to it
    stopping: trio.Event = field(default_factory=trio.Event)


Starter = Callable[[Runtime, trio.Nursery], Awaitable[Callable[[], Awaitable[None]] | None]]


async def run_service(config: CommonConfig, start: Starter, *, uses_db: bool = True,
                      uses_cache: bool = True, cache_required: bool = False,
                      extra_routes: list[Any] | None = None, handle_signals: bool = True,
                      task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one service until SIGTERM/SIGINT (or cancellation), then drain and exit.

    ``start(runtime, nursery)`` starts the service's tasks in ``nursery`` and may return a
    ``drain()`` coroutine function, awaited (bounded by the deadline) on shutdown.
    """
    health = Health()
    async with open_bus(config.nats_url, name=config.service, user=config.nats_user,
                        password=config.nats_password) as bus:
        health.add("nats", _async_true(lambda: bus.connected))
        runtime = Runtime(config, bus, health)
        if uses_db:
            runtime.db = Database(config.mysql)
            health.add("mysql", runtime.db.ping)
        if uses_cache:
            runtime.cache = Cache(config.redis_url, config.redis_prefix,
                                  socket_timeout=config.redis_timeout_s)
            health.add("redis", runtime.cache.ping, required=cache_required)
        try:
            await _serve(runtime, start, extra_routes or [], handle_signals, task_status)
        finally:
            if runtime.db:
                runtime.db.close()
            if runtime.cache:
                runtime.cache.close()


async def _serve(runtime: Runtime, start: Starter, routes: list[Any], handle_signals: bool,
                 task_status: trio.TaskStatus[Runtime]) -> None:
    config = runtime.config
    async with trio.open_nursery() as outer:
        runtime.app = build_app(runtime.health, routes)
        runtime.http_url = await outer.start(serve_http, runtime.app, config.http_host, config.http_port)
        async with trio.open_nursery() as inner:
            drain = await start(runtime, inner)
            runtime.health.started = True
            logger.info("service.started", http=runtime.http_url)
            task_status.started(runtime)
            if handle_signals:
                inner.start_soon(_stop_on_signal, runtime.stopping)
            await runtime.stopping.wait()
            runtime.health.draining = True
            logger.info("service.draining", deadline=config.shutdown_deadline)
            with trio.move_on_after(config.shutdown_deadline) as scope:
                if drain is not None:
                    await drain()
            if scope.cancelled_caught:
                logger.warning("service.drain_deadline_passed")
            inner.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    logger.info("service.stopped")


async def _stop_on_signal(stopping: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stopping.set()
            return


def _async_true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()
    return probe
