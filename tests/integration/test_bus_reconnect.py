"""The bus survives a NATS restart: no process exit, requests work again once it is back."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import trio

from libs.bus import BusTimeout, NoResponders, open_bus
from libs.natsd import start_nats


async def _serve_echo(bus, task_status=trio.TASK_STATUS_IGNORED):
    sub = await bus.subscribe("probe.echo", queue="probe")
    task_status.started()
    async for msg in sub:
        await msg.respond(b"pong")


async def test_requests_work_again_after_nats_restarts():
    store = Path(tempfile.mkdtemp(prefix="nj-restart-"))
    server = start_nats(store)
    try:
        async with open_bus(server.url, name="restart-test") as bus, trio.open_nursery() as nursery:
            await nursery.start(_serve_echo, bus)
            assert (await bus.request("probe.echo", b"ping", timeout=2)).data == b"pong"
            server.stop(kill=True)
            server = start_nats(store, port=server.port, monitor_port=server.monitor_port)
            with trio.fail_after(20):
                while True:
                    try:
                        reply = await bus.request("probe.echo", b"ping", timeout=0.5)
                        break
                    except (BusTimeout, NoResponders):
                        await trio.sleep(0.1)
            assert reply.data == b"pong"
            nursery.cancel_scope.cancel()
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
