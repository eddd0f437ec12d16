"""The shared runtime end to end: a service started by run_service answers RPC and probes."""

from __future__ import annotations

import httpx
import trio

from libs import rpc
from libs.bus import js_publish, pull_consumer
from libs.config import CommonConfig, EnvReader
from libs.errors import Forbidden, NatterjackError
from libs.lifecycle import run_service
from libs.migrate import ensure_database
from libs.streams import STREAM, ensure_consumer, ensure_stream


def _config(env: dict[str, str]) -> CommonConfig:
    reader = EnvReader(env)
    config = CommonConfig.read(reader, "probe", 0)
    reader.check()
    return config


async def _start(runtime, nursery):
    async def echo(payload):
        if payload.get("deny"):
            raise Forbidden("no", details={"why": "asked"})
        return {"echo": payload}
    await nursery.start(rpc.serve_rpc, runtime.bus, "im.probe.echo", "probe", echo)
    return None


async def test_service_answers_rpc_and_health(common_env):
    """Requirement R6.3: /ready, /health and /metrics answer."""
    config = _config(common_env("probe"))
    ensure_database(config.mysql)
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(run_service, config, _start)
        assert await rpc.call(runtime.bus, "im.probe.echo", {"a": 1}, timeout=2) == {"echo": {"a": 1}}
        try:
            await rpc.call(runtime.bus, "im.probe.echo", {"deny": True}, timeout=2)
        except NatterjackError as exc:
            assert exc.code == 4003 and exc.details == {"why": "asked"}
        else:
            raise AssertionError("expected an error reply")
        async with httpx.AsyncClient(base_url=runtime.http_url) as client:
            ready = await client.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"nats": "ok", "mysql": "ok", "redis": "ok"}
            assert (await client.get("/metrics")).status_code == 200
        runtime.stopping.set()


async def test_jetstream_publish_dedups_and_consumer_receives(common_env):
    config = _config(common_env("probe"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(run_service, config, _start)
        bus = runtime.bus
        await ensure_stream(bus)
        await ensure_consumer(bus, "probe-test")
        first = await js_publish(bus, "im.msg.probechat", b'{"x":1}', msg_id="probechat:1")
        again = await js_publish(bus, "im.msg.probechat", b'{"x":1}', msg_id="probechat:1")
        assert first.stream == STREAM and again.duplicate and again.seq == first.seq
        async with pull_consumer(bus, STREAM, "probe-test") as batches:
            with trio.fail_after(10):
                seen = []
                async for batch in batches:
                    for msg in batch:
                        msg.ack()
                        seen.append(msg.data)
                    if b'{"x":1}' in seen:
                        break
        runtime.stopping.set()
