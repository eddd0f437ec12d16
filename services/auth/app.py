"""Wiring of the auth service: migrate, then answer every ``im.auth.*`` subject."""

from __future__ import annotations

from pathlib import Path

import trio

from libs import log
from libs.ids import now_ms
from libs.lifecycle import Runtime, run_service
from libs.migrate import migrate
from libs.rpc import serve_rpc

from .config import Config
from .handlers import AuthHandlers
from .passwords import Passwords
from .ratelimit import RateLimits
from .storage import Storage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
QUEUE = "auth"
# Rows stay a day past expiry so a replayed, already expired token still reads as expired.
PURGE_GRACE_MS = 86_400_000
logger = log.get("auth")


async def main(config: Config, *, handle_signals: bool = True,
               task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    """Run auth until SIGTERM; ``task_status`` receives the Runtime once it serves.

    ``handle_signals=False`` when not run on the main thread (tests, benchmarks).
    """

    async def start(runtime: Runtime, nursery: trio.Nursery) -> None:
        applied = await trio.to_thread.run_sync(migrate, config.common.mysql, "auth", MIGRATIONS)
        if applied:
            logger.info("auth.migrated", applied=applied)
        if config.keys.generated:
            logger.warning("auth.generated_signing_key",
                           note="development only: tokens do not survive a restart")
        assert runtime.db is not None
        storage = Storage(runtime.db, runtime.cache, config.verify_cache_ttl_s)
        passwords = Passwords(config.argon2)
        await passwords.prepare()
        limits = RateLimits(runtime.cache, config.limits)
        handlers = AuthHandlers(storage, passwords, config.keys, runtime.bus, limits,
                                access_ttl_s=config.access_token_ttl_s,
                                refresh_ttl_s=config.refresh_token_ttl_s)
        for subject, handler in handlers.routes().items():
            await nursery.start(serve_rpc, runtime.bus, subject, QUEUE, handler)
        nursery.start_soon(purge_expired_sessions, storage, config.purge_interval_s)

    await run_service(config.common, start, uses_db=True, uses_cache=True,
                      handle_signals=handle_signals, task_status=task_status)


async def purge_expired_sessions(storage: Storage, interval_s: float) -> None:
    """Delete long-expired session rows now and then (each refresh adds one)."""
    while True:
        await trio.sleep(interval_s)
        try:
            deleted = await storage.purge_expired(now_ms() - PURGE_GRACE_MS)
        except Exception as exc:  # a failed purge must not stop the service
            logger.warning("auth.purge_failed", error=repr(exc))
            continue
        if deleted:
            logger.info("auth.purged_sessions", deleted=deleted)
