"""Opening the process's bus: the asyncio loop, the NATS connection, the outbound pump."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import trio
import trio_asyncio

from .. import log, metrics
from ._bus import Bus

logger = log.get("bus")


async def _connect(url: str, name: str, user: str, password: str,
                   connect_timeout: float) -> Any:
    async def on_error(exc: Exception) -> None:
        metrics.BUS_EVENTS.labels("error").inc()
        logger.warning("bus.error", error=repr(exc))

    async def on_disconnected() -> None:
        metrics.BUS_EVENTS.labels("disconnected").inc()
        logger.warning("bus.disconnected")

    async def on_reconnected() -> None:
        metrics.BUS_EVENTS.labels("reconnected").inc()
        logger.info("bus.reconnected")

    options: dict[str, Any] = dict(
        servers=[url], name=name, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, connect_timeout=connect_timeout, ping_interval=10,
        max_outstanding_pings=3, pending_size=8 * 1024 * 1024, error_cb=on_error,
        disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
    )
    if user:
        options.update(user=user, password=password)
    return await nats.connect(**options)


@asynccontextmanager
async def open_bus(url: str, *, name: str, user: str = "", password: str = "",
                   connect_timeout: float = 2.0, give_up_after: float = float("inf")
                   ) -> AsyncIterator[Bus]:
    """Connect to NATS (retrying with backoff until ``give_up_after``) and run the bridge.

    Must be entered inside trio; it opens the process's single asyncio loop. Once
    connected, nats-py reconnects by itself for as long as the process lives.
    """
    async with trio_asyncio.open_loop() as loop:
        nc = await _connect_with_backoff(url, name, user, password, connect_timeout, give_up_after)
        bus = Bus(nc, loop)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(bus._start)
                yield bus
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await trio_asyncio.aio_as_trio(nc.drain if nc.is_connected else nc.close, loop=loop)()


async def _connect_with_backoff(url: str, name: str, user: str, password: str,
                                connect_timeout: float, give_up_after: float) -> Any:
    delay, waited = 0.1, 0.0
    while True:
        try:
            return await trio_asyncio.aio_as_trio(_connect)(url, name, user, password, connect_timeout)
        except Exception as exc:  # nats-py raises several unrelated types here
            if waited >= give_up_after:
                raise
            logger.warning("bus.connect_failed", url=url, error=repr(exc), retry_in=delay)
            await trio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
