"""history's wiring: migrate, bind the stream consumer, start the writer, the recent-event
cache, retention and the RPC handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pymysql
import trio

from libs import log, rpc, streams
from libs.bus import Bus, pull_consumer
from libs.lifecycle import Runtime, run_service
from libs.migrate import migrate

from . import retention
from .config import Config
from .handlers import HistoryHandlers
from .hole_filler import HoleFiller
from .holes import HoleTracker
from .recent import RecentCache
from .storage import HistoryStorage, WriteResult
from .writer import EventWriter

CONSUMER = "history"
QUEUE = "history"
PAGE_SUBJECT = "im.history.page"
GET_SUBJECT = "im.history.get"
SEARCH_SUBJECT = "im.history.search"
FETCH_EXPIRES_S = 0.05
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
logger = log.get("history")


async def main(config: Config, *, handle_signals: bool = True,
               task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    async def start(runtime: Runtime, nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        assert runtime.db is not None
        await _migrate(config)
        await streams.ensure_stream(runtime.bus, config.stream)
        await streams.ensure_consumer(runtime.bus, CONSUMER)
        storage = HistoryStorage(runtime.db)
        recent = None
        if runtime.cache is not None and config.cache_events > 0:
            recent = RecentCache(runtime.cache, max_events=config.cache_events,
                                 ttl_s=config.cache_ttl_s)
            await nursery.start(recent.run_reconciler)
        holes = HoleFiller(HoleTracker(config.hole_after_s), storage, runtime.bus,
                           check_s=config.hole_check_s, scan=config.hole_scan,
                           timeout=config.common.request_timeout)
        writer = EventWriter(storage, batch_max=config.batch_max, batch_wait=config.batch_wait_s,
                             retry_base=config.retry_base_s, retry_max=config.retry_max_s,
                             after_commit=_after_commit(recent, holes))
        await nursery.start(_consume, runtime.bus, writer, config.batch_max)
        nursery.start_soon(streams.watch_consumer, runtime.bus, CONSUMER)
        await nursery.start(holes.run)
        handlers = HistoryHandlers(storage, recent, await storage.fulltext_settings())
        await nursery.start(rpc.serve_rpc, runtime.bus, PAGE_SUBJECT, QUEUE, handlers.page)
        await nursery.start(rpc.serve_rpc, runtime.bus, GET_SUBJECT, QUEUE, handlers.get)
        await nursery.start(rpc.serve_rpc, runtime.bus, SEARCH_SUBJECT, QUEUE, handlers.search)
        if config.retention_days > 0:
            await nursery.start(partial(retention.run, storage, recent, days=config.retention_days,
                                        batch=config.retention_batch,
                                        interval_s=config.retention_interval_s))
        return writer.drain

    await run_service(config.common, start, uses_db=True, uses_cache=True, uses_jetstream=True,
                      handle_signals=handle_signals, task_status=task_status)


def _after_commit(recent: RecentCache | None, holes: HoleFiller) -> Callable[[WriteResult], Awaitable[None]]:
    """Feed the hole tracker and fill the recent-event cache with what a batch wrote."""
    async def after(result: WriteResult) -> None:
        holes.observe(result)
        if recent is not None:
            await recent.store_written(result.chats)
    return after


async def _consume(bus: Bus, writer: EventWriter, fetch_batch: int, *,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    try:
        async with pull_consumer(bus, streams.STREAM, CONSUMER, batch=fetch_batch,
                                 expires=FETCH_EXPIRES_S) as batches:
            await writer.run(batches, task_status=task_status)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await _release_pull_subscriptions(bus)


async def _release_pull_subscriptions(bus: Bus) -> None:
    """Unsubscribe the pull subscription pull_consumer leaves behind when it exits.

    Workaround (nats-py 2.16.0): fetch takes leftover status replies off the subscription's
    queue with get_nowait() and never marks them done, so the connection's drain at
    shutdown waits on the queue's join() until the bus close times out and the asyncio
    cancellation escapes as an error. Pull subscriptions are the only ones without a
    callback (Bus subscribes with one). Remove once libs.bus.pull_consumer unsubscribes.
    """
    for sub in list(bus.nc._subs.values()):
        if sub._cb is None and not sub._closed:
            try:
                await bus.call_aio(sub.unsubscribe)
            except Exception as exc:  # closed or reconnecting: nothing left to release
                logger.debug("history.pull_unsubscribe_failed", error=repr(exc))


async def _migrate(config: Config) -> None:
    """Apply history's migrations, waiting out a MySQL that is not up yet."""
    delay = config.retry_base_s
    while True:
        try:
            applied = await trio.to_thread.run_sync(migrate, config.common.mysql, "history",
                                                    MIGRATIONS)
        except pymysql.err.OperationalError as exc:
            logger.warning("history.migrate_failed", error=repr(exc), retry_in=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, config.retry_max_s)
            continue
        logger.info("history.migrated", applied=applied)
        return
