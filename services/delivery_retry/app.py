"""Wiring of delivery-retry: migrations, stream consumer, ack writer, request handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from libs import log, migrate, rpc, streams
from libs.lifecycle import Runtime, run_service

from .ack_writer import AckWriter
from .config import SERVICE, Config
from .handlers import QUEUE, Handlers
from .projector import DURABLE, Projector
from .storage import Storage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
logger = log.get("delivery_retry")


async def main(config: Config, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
               ) -> None:
    async def start(runtime: Runtime, nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        return await _start(config, runtime, nursery)

    # No Redis yet: cursors are read from MySQL; a hot-cursor cache can come with retries.
    await run_service(config.common, start, uses_cache=False, task_status=task_status)


async def _start(config: Config, runtime: Runtime, nursery: trio.Nursery
                 ) -> Callable[[], Awaitable[None]]:
    applied = await trio.to_thread.run_sync(migrate.migrate, config.common.mysql, SERVICE,
                                            MIGRATIONS)
    if applied:
        logger.info("dlv.migrated", applied=applied)
    await streams.ensure_stream(runtime.bus, config.stream)
    await streams.ensure_consumer(runtime.bus, DURABLE)
    assert runtime.db is not None
    storage = Storage(runtime.db)
    projector = Projector(runtime.bus, storage)
    acks = AckWriter(storage, window_s=config.ack_batch_ms / 1000)
    await nursery.start(projector.run)
    await nursery.start(acks.run)
    for subject, handler in Handlers(storage, acks).routes().items():
        await nursery.start(rpc.serve_rpc, runtime.bus, subject, QUEUE, handler)

    async def drain() -> None:
        async with trio.open_nursery() as draining:
            draining.start_soon(projector.drain)
            draining.start_soon(acks.close)
        # Let the bus hand the last acks to NATS before the connection closes.
        await trio.sleep(0.05)

    return drain
