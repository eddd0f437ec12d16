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
from functools import partial
from typing import Any

import orjson
import trio

from . import log
from .bus import Bus, open_bus
from .cache import Cache
from .config import CommonConfig
from .db import Database
from .errors import Unavailable
from .health import DEGRADED, DOWN, OK, Health
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
                      db_required: bool = True, uses_cache: bool = True, cache_required: bool = False,
                      uses_jetstream: bool = False, tls: tuple[str, str] | None = None,
                      extra_routes: list[Any] | None = None, handle_signals: bool = True,
                      task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one service until SIGTERM/SIGINT (or cancellation), then drain and exit.

    ``start(runtime, nursery)`` starts the service's tasks in ``nursery`` and may return a
    ``drain()`` coroutine function, awaited (bounded by the deadline) on shutdown.
    ``db_required=False``: the service does its core work without MySQL, so MySQL down
    makes it ``degraded`` (200), not ``down`` (503).
    ``uses_jetstream``: the ``nats`` check also asks JetStream (``degraded`` when it does
    not answer). ``tls``: (certificate, key) PEM files; the HTTP port then speaks HTTPS.
    """
    health = Health(config.service, cache_for=config.health_cache_s,
                    timeout=config.health_timeout_s)
    async with open_bus(config.nats_url, name=config.service, user=config.nats_user,
                        password=config.nats_password) as bus:
        health.add("nats", nats_probe(bus, uses_jetstream))
        runtime = Runtime(config, bus, health)
        if uses_db:
            runtime.db = Database(config.mysql)
            health.add("mysql", runtime.db.probe, required=db_required)
        if uses_cache:
            runtime.cache = Cache(config.redis_url, config.redis_prefix,
                                  socket_timeout=config.redis_timeout_s)
            health.add("redis", runtime.cache.probe, required=cache_required)
        try:
            await _serve(runtime, start, extra_routes or [], handle_signals, tls, task_status)
        finally:
            if runtime.db:
                runtime.db.close()
            if runtime.cache:
                runtime.cache.close()


async def _serve(runtime: Runtime, start: Starter, routes: list[Any], handle_signals: bool,
                 tls: tuple[str, str] | None, task_status: trio.TaskStatus[Runtime]) -> None:
    config = runtime.config
    certfile, keyfile = tls or ("", "")
    async with trio.open_nursery() as outer:
        runtime.app = build_app(runtime.health, routes)
        runtime.http_url = await outer.start(partial(
            serve_http, runtime.app, config.http_host, config.http_port,
            certfile=certfile, keyfile=keyfile))
        outer.start_soon(runtime.health.watch)
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


def nats_probe(bus: Bus, jetstream: bool) -> Callable[[], Awaitable[str]]:
    """``down`` while disconnected; ``degraded`` when connected but JetStream (if the
    service uses it) does not answer or refuses (e.g. not enabled, no storage)."""
    async def probe() -> str:
        if not bus.connected:
            return DOWN
        if not jetstream:
            return OK
        try:
            reply = await bus.request("$JS.API.INFO", b"", timeout=1.0)
            answer = orjson.loads(reply.data)
        except (Unavailable, orjson.JSONDecodeError):
            return DEGRADED
        return DEGRADED if not isinstance(answer, dict) or "error" in answer else OK
    return probe
