"""auth without Redis (MySQL alone serves, limits are off) and without MySQL (prompt 5003)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
import trio

from libs import rpc
from libs.bus import Bus
from libs.errors import NatterjackError
from libs.natsd import free_port
from services.auth import app
from services.auth.config import load

PASSWORD = "correct horse battery"


async def call(bus: Bus, verb: str, payload: dict[str, Any]) -> Any:
    return await rpc.call(bus, f"im.auth.{verb}", payload, timeout=15)


async def fails(bus: Bus, verb: str, payload: dict[str, Any], code: int) -> NatterjackError:
    with pytest.raises(NatterjackError) as caught:
        await call(bus, verb, payload)
    assert caught.value.code == code, caught.value.to_body()
    return caught.value


async def once_back(bus: Bus, verb: str, payload: dict[str, Any], timeout: float = 5) -> Any:
    with trio.fail_after(timeout):
        while True:
            try:
                return await call(bus, verb, payload)
            except NatterjackError as exc:
                if exc.code != 5003:
                    raise
                await trio.sleep(0.05)


def _name() -> str:
    return f"Deg_{secrets.token_hex(4)}"


async def test_login_and_refresh_work_from_mysql_without_redis(common_env):
    """Requirement R6.2: auth keeps working without Redis."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    config = load(common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true", NJ_REDIS_URL=dead_redis,
                             NJ_AUTH_LOGIN_FREE_ATTEMPTS="1",
                             NJ_AUTH_REGISTER_PER_IP_PER_HOUR="1"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        bus, name, ip = runtime.bus, _name(), "203.0.113.9"
        await call(bus, "register", {"username": name, "password": PASSWORD, "client_ip": ip})
        # Rate limits are skipped without Redis: neither of these is a 4029.
        await call(bus, "register", {"username": _name(), "password": PASSWORD, "client_ip": ip})
        for _ in range(3):
            await fails(bus, "login", {"username": name, "password": "wrong password",
                                       "client_ip": ip}, 4010)
        grant = await call(bus, "login", {"username": name, "password": PASSWORD, "client_ip": ip})
        renewed = await call(bus, "refresh", {"refresh_token": grant["refresh_token"]})
        assert (await call(bus, "verify", {"token": renewed["access_token"]}))["live"]
        await fails(bus, "verify", {"session_id": grant["session_id"]}, 4010)
        await call(bus, "logout", {"session_id": renewed["session_id"]})
        await fails(bus, "verify", {"session_id": renewed["session_id"]}, 4010)
        async with httpx.AsyncClient(base_url=runtime.http_url) as client:
            ready = await client.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "down"
        runtime.stopping.set()


class Proxy:
    """A TCP forwarder to MySQL that can be cut (port refuses, connections drop) and restored."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.scope = trio.CancelScope()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            await trio.serve_tcp(self._forward, self.port, host="127.0.0.1",
                                 task_status=task_status)

    async def _forward(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, nursery.cancel_scope)

    @staticmethod
    async def _pump(source: trio.SocketStream, sink: trio.SocketStream,
                    done: trio.CancelScope) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
        except trio.BrokenResourceError:
            pass
        done.cancel()

    def cut(self) -> None:
        self.scope.cancel()
        self.scope = trio.CancelScope()


async def test_mysql_down_answers_5003_promptly(common_env, mysql_config):
    """Requirements R5.5, R6.1: MySQL down answers 5003 at once; service resumes when it is back."""
    proxy = Proxy(mysql_config.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        env = common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true", NJ_MYSQL_PORT=str(proxy.port),
                         NJ_AUTH_VERIFY_CACHE_TTL_S="0", NJ_AUTH_LOGIN_FREE_ATTEMPTS="2")
        runtime = await nursery.start(app.main, load(env))
        bus, name = runtime.bus, _name()
        await call(bus, "register", {"username": name, "password": PASSWORD})
        grant = await call(bus, "login", {"username": name, "password": PASSWORD})

        proxy.cut()  # MySQL's address now refuses connections; pooled ones are dropped
        for verb, payload in (
                ("login", {"username": name, "password": PASSWORD}),
                ("login", {"username": name, "password": PASSWORD}),
                ("login", {"username": name, "password": PASSWORD}),
                ("refresh", {"refresh_token": grant["refresh_token"]}),
                ("verify", {"session_id": grant["session_id"]}),
                ("verify", {"token": grant["access_token"]}),
                ("register", {"username": _name(), "password": PASSWORD})):
            started = trio.current_time()
            error = await fails(bus, verb, payload, 5003)
            assert trio.current_time() - started < 5, (verb, error.to_body())

        await nursery.start(proxy.run)  # MySQL is back
        # 5003 at once until the breaker's next trial (at most NJ_MYSQL_BREAKER_MAX_MS) gets
        # an answer. The 5003 logins did not count as failures: no lockout after three of them.
        assert (await once_back(bus, "login", {"username": name, "password": PASSWORD}))["user_id"]
        assert (await call(bus, "refresh", {"refresh_token": grant["refresh_token"]}))["user_id"]
        runtime.stopping.set()
        proxy.cut()
