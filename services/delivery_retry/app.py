"""Wiring of delivery-retry: migrations, stream consumer, ack writer, redelivery scheduler,
receipts, push events and the request handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from libs import ids, log, migrate, rpc, streams
from libs.lifecycle import Runtime, run_service

from .ack_writer import AckWriter
from .config import SERVICE, Config
from .domain import StreamEvent
from .handlers import QUEUE, Handlers
from .notices import OfflinePushes, Receipts
from .outbox import Outbox
from .projector import DURABLE, Projector
from .push import Pusher
from .schedule_storage import ScheduleStorage
from .scheduler import Schedule, Scheduler
from .status_reader import StatusReader
from .storage import Storage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
logger = log.get("delivery_retry")


async def main(config: Config, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
               ) -> None:
    async def start(runtime: Runtime, nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        return await _start(config, runtime, nursery)

    # Redis is optional: without it there is no presence, so no redelivery, receipts or
    # pushes; acks, sync and status keep working from MySQL.
    await run_service(config.common, start, uses_cache=True, uses_jetstream=True,
                      task_status=task_status)


def _schedule(config: Config) -> Schedule:
    return Schedule(config.backoff_s, config.max_attempts, config.scan_interval_ms / 1000,
                    idle_scan_s=max(config.idle_scan_ms, config.scan_interval_ms) / 1000,
                    max_resend=config.max_resend, request_timeout=config.common.request_timeout,
                    lease_s=config.lease_s,
                    # Half the MySQL pool at most: acks and the projection need the rest.
                    concurrency=max(1, config.common.mysql.pool_size // 2))


async def _start(config: Config, runtime: Runtime, nursery: trio.Nursery
                 ) -> Callable[[], Awaitable[None]]:
    applied = await trio.to_thread.run_sync(migrate.migrate, config.common.mysql, SERVICE,
                                            MIGRATIONS)
    if applied:
        logger.info("dlv.migrated", applied=applied)
    await streams.ensure_stream(runtime.bus, config.stream)
    await streams.ensure_consumer(runtime.bus, DURABLE)
    nursery.start_soon(streams.watch_consumer, runtime.bus, DURABLE)
    assert runtime.db is not None
    schedule = _schedule(config)
    storage = Storage(runtime.db, schedule.delay_ms(1))
    plans = ScheduleStorage(runtime.db)
    outbox = Outbox(runtime.bus, runtime.cache, config.common.presence_ttl_s)
    pusher = Pusher(runtime.bus, runtime.cache, config.push)
    if pusher.webhook is not None:  # optional: pushes still go out on NATS without it
        runtime.health.add("push_webhook", pusher.webhook.health, required=False)
    receipts, pushes = Receipts(outbox), OfflinePushes(outbox, pusher.notify)
    scheduler = Scheduler(plans, outbox, runtime.bus, schedule)

    def stored(events: list[StreamEvent], members: dict[str, list[str]]) -> None:
        pushes.stored(events, members)
        scheduler.due_by(ids.now_ms() + storage.check_delay_ms)  # the batch's looks
    projector = Projector(runtime.bus, storage)
    projector.on_stored = stored
    acks = AckWriter(storage, window_s=config.ack_batch_ms / 1000)
    acks.on_advanced = receipts.advanced
    for task in (pusher.run, receipts.queue.run, pushes.queue.run, projector.run, acks.run,
                 scheduler.run):
        await nursery.start(task)
    statuses = StatusReader(plans, outbox, runtime.bus, config.common.request_timeout)
    for subject, handler in Handlers(storage, acks, statuses).routes().items():
        await nursery.start(rpc.serve_rpc, runtime.bus, subject, QUEUE, handler)

    async def drain() -> None:
        scheduler.stop()
        async with trio.open_nursery() as draining:
            draining.start_soon(projector.drain)
            draining.start_soon(acks.close)
        await pushes.queue.close()
        await pushes.queue.finished.wait()
        await pusher.drain()
        # Let the bus hand the last acks to NATS before the connection closes.
        await trio.sleep(0.05)

    return drain
