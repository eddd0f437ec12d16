"""The HTTP side of every service: ``/health``, ``/ready``, ``/metrics`` (and the gateway's API).

Starlette apps served by hypercorn's trio worker; :func:`serve_http` follows trio's start
protocol and reports the bound address, so tests can bind port 0.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import prometheus_client
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .errors import MALFORMED, NOT_FOUND, NatterjackError
from .health import Health


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(error: NatterjackError) -> Response:
    headers = None
    if error.details and "retry_after_ms" in error.details:
        headers = {"Retry-After": str(max(1, -(-int(error.details["retry_after_ms"]) // 1000)))}
    return json_response({"error": error.to_body()}, error.http_status, headers)


def ops_routes(health: Health) -> list[BaseRoute]:
    async def health_endpoint(_: Request) -> Response:
        return json_response(health.last_report()[1])  # liveness: never waits on a probe

    async def ready_endpoint(_: Request) -> Response:
        is_ready, body = await health.report()
        return json_response(body, 200 if is_ready else 503)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(prometheus_client.generate_latest(),
                        media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return [Route("/health", health_endpoint), Route("/ready", ready_endpoint),
            Route("/metrics", metrics_endpoint)]


async def routing_error(_: Request, exc: Exception) -> Response:
    """No route for the path (404, 4004) or not for the method (405, 4000): the contract's
    error body, not the framework's plain text."""
    assert isinstance(exc, HTTPException)
    code = NOT_FOUND if exc.status_code == 404 else MALFORMED
    headers = dict(exc.headers) if exc.headers else None
    return json_response({"error": {"code": code, "message": exc.detail}}, exc.status_code, headers)


class CloseUnreadBodies:
    """An answer given before the request body was read in full (a 401 or 413 before a big
    upload was consumed) says ``Connection: close``: the server drops such a connection
    afterwards, and a client that reused it would lose its next request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        done = headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers

        async def tracked_receive() -> Any:
            nonlocal done
            message = await receive()
            done = done or message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def closing_send(message: Any) -> None:
            if message["type"] == "http.response.start" and not done:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracked_receive, closing_send)


def build_app(health: Health, routes: list[BaseRoute] = (), **kwargs: Any) -> Starlette:  # type: ignore[assignment]
    app = Starlette(routes=[*ops_routes(health), *routes],
                    exception_handlers={HTTPException: routing_error}, **kwargs)
    app.add_middleware(CloseUnreadBodies)
    return app


async def serve_http(app: Any, host: str, port: int, *,
                     shutdown: Callable[[], Awaitable[None]] | None = None,
                     certfile: str = "", keyfile: str = "",
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app``; ``task_status.started(base_url)`` once listening."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 5
    config.keep_alive_timeout = 75
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile

    async def start(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(app, config, shutdown_trigger=shutdown or trio.sleep_forever,
                    task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(start)
        task_status.started(binds[0])
