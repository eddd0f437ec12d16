"""Gateway wiring: keys, REST routes, the WebSocket edge, and the bus deliveries it serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import trio
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from libs import contracts, ids, log
from libs.bus import Bus
from libs.errors import MALFORMED, NatterjackError
from libs.lifecycle import Runtime, run_service

from .config import Config
from .connection import CLOSE_SESSION_ENDED
from .handlers import FrameHandlers, Hub
from .keys import KeyRing
from .placement import Directory
from .rest import RestApi
from .storage import Presence
from .ws import WebSocketEdge

logger = log.get("gateway")
ANNOUNCE_SUBJECT = "im.gw.announce"
ANNOUNCE_SCHEMA = "schemas/nats/gw.announce.json"
ANNOUNCE_EVERY_S = 5.0
PRESENCE_RETRY_S = 0.05  # first retry of a failed presence refresh (doubles)
STATIC_DIR = Path(__file__).parent / "static"
DEMO_CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


async def main(config: Config, *, handle_signals: bool = True,
               task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the gateway; ``handle_signals=False`` when not on the main thread (tests)."""
    gateway_id = f"gw-{ids.new_id()}"  # unique per process start: im.gw.<id>.deliver

    async def start(runtime: Runtime, nursery: trio.Nursery) -> Callable[[], Awaitable[None]]:
        keys = KeyRing(runtime.bus, config.common.request_timeout)
        hub = Hub()
        presence = Presence(runtime.cache, gateway_id, config.common.presence_ttl_s) if runtime.cache else None
        edge = WebSocketEdge(config, gateway_id, hub, FrameHandlers(config, runtime.bus), keys, presence)
        server = await nursery.start(edge.serve)
        scheme = "wss" if config.tls_cert else "ws"
        ws_url = config.public_ws_url or f"{scheme}://{config.ws_host}:{server.port}/ws"
        directory = Directory(ANNOUNCE_EVERY_S * 3)
        runtime.app.router.routes.extend(RestApi(
            runtime.bus, keys, config.common.request_timeout,
            lambda user_id: directory.url_for(user_id, trio.current_time(), ws_url), presence).routes())
        runtime.app.router.routes.extend(demo_routes())
        runtime.app.state.gateway_id, runtime.app.state.ws_url = gateway_id, ws_url
        await _fetch_keys(keys)
        await nursery.start(_serve_deliveries, runtime.bus, gateway_id, hub)
        await nursery.start(_serve_revocations, runtime.bus, hub, keys)
        await nursery.start(_track_gateways, runtime.bus, directory)
        nursery.start_soon(_announce, runtime.bus, gateway_id, ws_url)
        if presence:
            nursery.start_soon(_refresh_presence, presence, hub, config.common.presence_ttl_s)

        async def drain() -> None:  # bounded by NJ_SHUTDOWN_DEADLINE_S
            edge.go_away()
            while hub.all():  # noqa: ASYNC110 - sockets close on their own tasks
                await trio.sleep(0.05)
        return drain

    tls = (config.tls_cert, config.tls_key) if config.tls_cert else None
    await run_service(config.common, start, uses_db=False, tls=tls, handle_signals=handle_signals,
                      task_status=task_status)


def demo_routes() -> list[BaseRoute]:
    """The browser demo: ``/`` and ``/static/*`` only, so no API or ops path is shadowed."""
    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": DEMO_CSP})
    return [Route("/", index, methods=["GET", "HEAD"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]


async def _announce(bus: Bus, gateway_id: str, ws_url: str) -> None:
    """Tell every gateway we are here, so logins spread users over all live gateways."""
    body = orjson.dumps({"gateway_id": gateway_id, "ws_url": ws_url})
    while True:
        await bus.publish(ANNOUNCE_SUBJECT, body)
        await trio.sleep(ANNOUNCE_EVERY_S)


async def _track_gateways(bus: Bus, directory: Directory,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    sub = await bus.subscribe(ANNOUNCE_SUBJECT)
    task_status.started()
    async for msg in sub:
        try:
            # Checked against its schema: logins hand the ws_url out to clients.
            seen = contracts.check(contracts.validator(ANNOUNCE_SCHEMA), orjson.loads(msg.data),
                                   code=MALFORMED, what="announcement")
            directory.saw(seen["gateway_id"], seen["ws_url"], trio.current_time())
        except (orjson.JSONDecodeError, NatterjackError) as exc:
            logger.warning("gateway.bad_announcement", error=repr(exc))


async def _fetch_keys(keys: KeyRing) -> None:
    """auth may start after us: keep asking for its public keys until it answers."""
    delay = 0.1
    while True:
        try:
            await keys.refresh()
            return
        except Exception as exc:  # noqa: BLE001 - any failure here means "ask again"
            logger.warning("gateway.keys_unavailable", error=str(exc), retry_in=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 5)


async def _serve_deliveries(bus: Bus, gateway_id: str, hub: Hub,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        for subject in (f"im.gw.{gateway_id}.deliver", "im.gw.all.deliver"):
            sub = await bus.subscribe(subject, max_pending=100_000)
            nursery.start_soon(_deliver_loop, sub, hub)
        task_status.started()


async def _deliver_loop(sub: Any, hub: Hub) -> None:
    async for msg in sub:
        try:
            hub.deliver(orjson.loads(msg.data))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            logger.warning("gateway.bad_delivery", subject=msg.subject, error=repr(exc))


async def _serve_revocations(bus: Bus, hub: Hub, keys: KeyRing,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    sub = await bus.subscribe("im.evt.session.revoked.*")
    task_status.started()
    async for msg in sub:
        try:
            event = orjson.loads(msg.data)
            keys.revoked_sessions.add(event["session_id"])
            hub.end_session(event["user_id"], event["session_id"], CLOSE_SESSION_ENDED, "session ended")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            logger.warning("gateway.bad_revocation", error=repr(exc))


async def _refresh_presence(presence: Presence, hub: Hub, ttl_s: float) -> None:
    """Re-confirm every local socket each third of the TTL. After a failed round (Redis
    away) retry soon, backing off from PRESENCE_RETRY_S: entries that went stale meanwhile
    make their devices look offline (no live deliveries) until the next round succeeds."""
    pause = ttl_s / 3
    while True:
        await trio.sleep(pause)
        entries = [(c.user_id, c.device_id, c.connection_id) for c in hub.all()]
        try:
            await presence.refresh(entries, ids.now_ms())
            pause = ttl_s / 3
        except Exception as exc:  # noqa: BLE001 - Redis outage: keep serving, retry soon
            pause = min(ttl_s / 3, PRESENCE_RETRY_S if pause == ttl_s / 3 else pause * 2)
            logger.warning("gateway.presence_refresh_failed", error=repr(exc), retry_in=pause)
