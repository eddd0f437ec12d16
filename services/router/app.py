"""Router wiring: migrations, stream, the request subjects it answers, background tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from libs import rpc
from libs.lifecycle import Runtime, run_service
from libs.migrate import migrate
from libs.streams import ensure_stream

from . import domain
from .admin import ChatAdmin
from .claims import DurableClaims
from .config import Config
from .content_types import ContentTypes
from .dedup import Dedup
from .fanout import Fanout
from .handlers import Handlers
from .holes import HoleVoider
from .signals import Signals
from .storage import Storage

MIGRATIONS = Path(__file__).parent / "migrations"
QUEUE = "router"


async def main(config: Config, *, handle_signals: bool = True,
               task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the router; ``handle_signals=False`` when not on the main thread (tests)."""

    async def start(runtime: Runtime, nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        assert runtime.db is not None and runtime.cache is not None
        await trio.to_thread.run_sync(migrate, config.common.mysql, "router", MIGRATIONS)
        await ensure_stream(runtime.bus, config.stream)
        storage = Storage(runtime.db, runtime.cache, config.seq_block)
        # Seq reservations run beside the sends, which never wait on MySQL for long.
        storage.seq.spawn, storage.seq.reserve_wait = nursery.start_soon, config.seq_reserve_wait_s
        fanout = Fanout(runtime.bus, storage, config.common.presence_ttl_s, nursery,
                        concurrency=config.fanout_concurrency, backlog=config.fanout_backlog)
        types = ContentTypes(storage)
        claims, dedup = await _start_dedup(config, runtime, storage, nursery)
        core = Handlers(config, runtime.bus, storage, types, fanout, nursery, dedup)
        admin, signals = ChatAdmin(core), Signals(core)

        await nursery.start(storage.seq.run_flusher, config.confirm_flush_s)
        routes = {"send": core.send, "read": core.read, "reads": core.reads, "chat.create": core.create_chat,
                  "chat.get": core.get_chat, "chat.list": core.list_chats,
                  "chat.update": admin.update_chat, "message.update": core.update_message,
                  "members.add": admin.add_member, "members.remove": admin.remove_member,
                  "owner.transfer": admin.transfer_owner, "typing": signals.typing,
                  "types.register": types.register, "types.list": types.list,
                  "holes": HoleVoider(core).void}
        intake = rpc.Intake()
        for verb, handler in routes.items():
            await nursery.start(partial(rpc.serve_rpc, runtime.bus, f"im.router.{verb}", QUEUE,
                                        handler, intake=intake))
        await nursery.start(signals.serve_presence, runtime.bus, QUEUE)

        async def drain() -> None:  # bounded by NJ_SHUTDOWN_DEADLINE_S
            intake.close()  # taken sends are answered: none is stored with its claim left behind
            await intake.drained()
            await fanout.drained()
            if claims is not None:
                await claims.drain()  # the write-behind acks and releases
        return drain

    # Sends need no MySQL (numbers come from Redis, events are durable in JetStream): without
    # it the router is degraded, still ready.
    await run_service(config.common, start, uses_jetstream=True, db_required=False,
                      handle_signals=handle_signals, task_status=task_status)


async def _start_dedup(config: Config, runtime: Runtime, storage: Storage, nursery: trio.Nursery
                       ) -> tuple[DurableClaims | None, Dedup]:
    """Send de-duplication; with NJ_ROUTER_DEDUP_DURABLE=0 Redis alone (no MySQL writes)."""
    assert runtime.db is not None
    pending_s = domain.pending_lifetime_s(config.publish_deadline_s, config.dedup_ttl_s)
    claims = None
    if config.dedup_durable:
        claims = DurableClaims(runtime.db, pending_s=pending_s, wait_s=config.dedup_claim_wait_s,
                               max_batch=config.dedup_batch_max)
        await nursery.start(claims.run)
        await nursery.start(partial(claims.run_cleanup, config.dedup_ttl_s,
                                    config.dedup_cleanup_interval_s, config.dedup_cleanup_batch))
    return claims, Dedup(storage, claims, pending_s=pending_s, ttl_s=config.dedup_ttl_s)
