"""auth end to end over NATS against real MySQL and Redis: accounts, sessions, tokens, events."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import orjson
import pytest
import trio

from libs import rpc, tokens
from libs.bus import Bus, open_bus
from libs.errors import NatterjackError
from libs.natsd import free_port
from services.auth import app
from services.auth.config import load

PASSWORD = "correct horse battery"


async def call(bus: Bus, verb: str, payload: dict[str, Any]) -> Any:
    return await rpc.call(bus, f"im.auth.{verb}", payload, timeout=10)


async def fails(bus: Bus, verb: str, payload: dict[str, Any], code: int) -> NatterjackError:
    with pytest.raises(NatterjackError) as caught:
        await call(bus, verb, payload)
    assert caught.value.code == code, caught.value.to_body()
    return caught.value


async def login(bus: Bus, username: str, device_id: str) -> dict[str, Any]:
    return await call(bus, "login", {"username": username, "password": PASSWORD,
                                     "device_id": device_id})


class Events:
    """The revoked events of one user, in arrival order."""

    def __init__(self, sub):
        self.sub = sub

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(5):
            msg = await self.sub.receive.receive()
        return orjson.loads(msg.data)


async def watch(bus: Bus, user_id: str) -> Events:
    sub = await bus.subscribe(f"im.evt.session.revoked.{user_id}")
    await bus.call_aio(bus.nc.flush)
    return Events(sub)


def _name() -> str:
    return f"Alice_{secrets.token_hex(3)}"


async def test_auth_flow(common_env, nats_server):
    config = load(common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        async with open_bus(nats_server.url, name="test") as bus:
            await _register_and_login(bus, runtime)
            await _refresh_rotation_and_reuse(bus)
            await _devices(bus)
            await _users_exist(bus)
            await _expired_refresh(bus, runtime)
        runtime.stopping.set()


async def _register_and_login(bus: Bus, runtime) -> None:
    name = _name()
    user_id = (await call(bus, "register", {"username": name, "password": PASSWORD,
                                            "display_name": "Alice"}))["user_id"]
    assert len(user_id) == 26
    await fails(bus, "register", {"username": name.lower(), "password": PASSWORD}, 4009)
    bad = await fails(bus, "register", {"username": "ab", "password": PASSWORD}, 4000)
    assert bad.details == {"field": "username"}
    assert (await fails(bus, "register", {"username": _name(), "password": "short"}, 4000)
            ).details == {"field": "password"}

    wrong = await fails(bus, "login", {"username": name, "password": "wrong password"}, 4010)
    unknown = await fails(bus, "login", {"username": _name(), "password": PASSWORD}, 4010)
    assert wrong.message == unknown.message == "invalid credentials"

    grant = await call(bus, "login", {"username": name.upper(), "password": PASSWORD})
    assert grant["user_id"] == user_id and len(grant["device_id"]) == 26
    assert grant["expires_in"] == 900 and grant["refresh_token"]

    jwks = await call(bus, "jwks", {})
    verifier = tokens.Verifier({k["kid"]: k["public_key_pem"] for k in jwks["keys"]})
    assert all(k["alg"] == "EdDSA" for k in jwks["keys"])
    claims = verifier.verify(grant["access_token"])
    assert (claims.user_id, claims.device_id, claims.session_id) == \
        (user_id, grant["device_id"], grant["session_id"])

    session_id = grant["session_id"]
    live = await call(bus, "verify", {"session_id": session_id})
    assert live == {"live": True, "user_id": user_id, "device_id": grant["device_id"],
                    "session_id": session_id}
    by_token = await call(bus, "verify", {"token": grant["access_token"]})
    assert by_token["live"] and by_token["expires_ts"] == claims.expires_at * 1000
    keys = runtime.cache.keys
    assert await runtime.cache.run(lambda c: c.exists(keys.session(session_id))) == 1

    listed = await call(bus, "sessions.list", {"user_id": user_id, "session_id": session_id})
    assert [(s["device_id"], s["current"]) for s in listed["sessions"]] == \
        [(grant["device_id"], True)]

    events = await watch(bus, user_id)
    assert await call(bus, "logout", {"session_id": session_id}) == {}
    event = await events.next()
    assert {k: event[k] for k in ("user_id", "session_id", "device_id")} == \
        {"user_id": user_id, "session_id": session_id, "device_id": grant["device_id"]}
    assert event["reason"] == "logout"
    await fails(bus, "verify", {"session_id": session_id}, 4010)
    await fails(bus, "verify", {"token": grant["access_token"]}, 4010)
    assert await call(bus, "logout", {"session_id": session_id}) == {}  # idempotent
    await fails(bus, "verify", {"session_id": "01UNKNOWNSESSION0000000000"}, 4010)
    assert (await fails(bus, "verify", {}, 4000)).details == {"field": "session_id"}
    await events.sub.close()


async def _refresh_rotation_and_reuse(bus: Bus) -> None:
    name = _name()
    user_id = (await call(bus, "register", {"username": name, "password": PASSWORD}))["user_id"]
    first = await login(bus, name, "phone:1")
    second = await call(bus, "refresh", {"refresh_token": first["refresh_token"]})
    assert (second["user_id"], second["device_id"]) == (user_id, "phone:1")
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] != first["session_id"]
    await call(bus, "verify", {"session_id": second["session_id"]})
    await fails(bus, "verify", {"session_id": first["session_id"]}, 4010)

    third = await call(bus, "refresh", {"refresh_token": second["refresh_token"]})
    events = await watch(bus, user_id)
    # The first token was already rotated: presenting it again ends the whole family.
    await fails(bus, "refresh", {"refresh_token": first["refresh_token"]}, 4010)
    event = await events.next()
    assert (event["session_id"], event["reason"]) == (third["session_id"], "refresh_reuse")
    await fails(bus, "verify", {"session_id": third["session_id"]}, 4010)
    await fails(bus, "refresh", {"refresh_token": third["refresh_token"]}, 4010)
    await fails(bus, "refresh", {"refresh_token": "never-issued"}, 4010)
    await fails(bus, "refresh", {}, 4000)
    await events.sub.close()


async def _devices(bus: Bus) -> None:
    name = _name()
    user_id = (await call(bus, "register", {"username": name, "password": PASSWORD}))["user_id"]
    phone = await login(bus, name, "phone")
    laptop = await login(bus, name, "laptop")
    events = await watch(bus, user_id)

    phone2 = await login(bus, name, "phone")
    event = await events.next()
    assert (event["session_id"], event["reason"]) == (phone["session_id"], "replaced")
    await fails(bus, "verify", {"session_id": phone["session_id"]}, 4010)

    listed = await call(bus, "sessions.list",
                        {"user_id": user_id, "session_id": phone2["session_id"]})
    assert sorted((s["device_id"], s["current"]) for s in listed["sessions"]) == \
        [("laptop", False), ("phone", True)]

    assert await call(bus, "sessions.revoke", {"user_id": user_id, "device_id": "laptop"}) == {}
    event = await events.next()
    assert (event["session_id"], event["device_id"]) == (laptop["session_id"], "laptop")
    await fails(bus, "verify", {"session_id": laptop["session_id"]}, 4010)
    await fails(bus, "sessions.revoke", {"user_id": user_id, "device_id": "laptop"}, 4004)
    await fails(bus, "sessions.revoke", {"user_id": user_id, "device_id": "bad device"}, 4000)
    listed = await call(bus, "sessions.list", {"user_id": user_id, "device_id": "phone"})
    assert [(s["device_id"], s["current"]) for s in listed["sessions"]] == [("phone", True)]
    await fails(bus, "login", {"username": name, "password": PASSWORD, "device_id": "x" * 65}, 4000)
    await events.sub.close()


async def _users_exist(bus: Bus) -> None:
    user_id = (await call(bus, "register", {"username": _name(), "password": PASSWORD}))["user_id"]
    answer = await call(bus, "users.exist", {"user_ids": [user_id, "NOPE", user_id]})
    assert answer == {"missing": ["NOPE"], "existing": [user_id]}
    many = [f"U{i}" for i in range(10_000)]
    assert len((await call(bus, "users.exist", {"user_ids": many}))["missing"]) == 10_000
    too_many = await fails(bus, "users.exist", {"user_ids": many + ["X"]}, 4000)
    assert too_many.details == {"field": "user_ids"}


async def _expired_refresh(bus: Bus, runtime) -> None:
    name = _name()
    await call(bus, "register", {"username": name, "password": PASSWORD})
    grant = await call(bus, "login", {"username": name, "password": PASSWORD})
    await runtime.db.execute("UPDATE sessions SET expires_ts = 1 WHERE session_id = %s",
                             (grant["session_id"],))
    await fails(bus, "refresh", {"refresh_token": grant["refresh_token"]}, 4010)


async def test_verify_falls_back_to_mysql_without_redis(common_env):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    config = load(common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true", NJ_REDIS_URL=dead_redis))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        bus = runtime.bus
        name = _name()
        await call(bus, "register", {"username": name, "password": PASSWORD})
        grant = await call(bus, "login", {"username": name, "password": PASSWORD})
        assert (await call(bus, "verify", {"session_id": grant["session_id"]}))["live"]
        await call(bus, "logout", {"session_id": grant["session_id"]})
        await fails(bus, "verify", {"session_id": grant["session_id"]}, 4010)
        async with httpx.AsyncClient(base_url=runtime.http_url) as client:
            ready = await client.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "down"
        runtime.stopping.set()
