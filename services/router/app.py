"""Router wiring: migrations, stream, and the request subjects it answers."""

from __future__ import annotations

from pathlib import Path

import trio

from libs import rpc
from libs.lifecycle import Runtime, run_service
from libs.migrate import migrate
from libs.streams import ensure_stream

from .config import Config
from .handlers import Handlers
from .storage import Storage

MIGRATIONS = Path(__file__).parent / "migrations"
QUEUE = "router"


async def main(config: Config, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    async def start(runtime: Runtime, nursery: trio.Nursery) -> None:
        assert runtime.db is not None and runtime.cache is not None
        await trio.to_thread.run_sync(migrate, config.common.mysql, "router", MIGRATIONS)
        await ensure_stream(runtime.bus, config.stream)
        handlers = Handlers(config, runtime.bus, Storage(runtime.db, runtime.cache, config.seq_block),
                            nursery)
        for verb, handler in (("send", handlers.send), ("read", handlers.read),
                              ("chat.create", handlers.create_chat), ("chat.get", handlers.get_chat),
                              ("chat.list", handlers.list_chats)):
            await nursery.start(rpc.serve_rpc, runtime.bus, f"im.router.{verb}", QUEUE, handler)

    await run_service(config.common, start, task_status=task_status)
