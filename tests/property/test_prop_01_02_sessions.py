"""Properties 1 and 2 of the design (seed 000) against a real auth service.

The service runs once per module in a background thread with its own ``trio.run`` (real
NATS, MySQL, Redis; argon2 at test cost). Each hypothesis example is a synchronous test
body that runs its async scenario in that thread through ``trio.from_thread.run``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs import rpc, tokens
from libs.bus import Bus, open_bus
from libs.errors import NatterjackError
from services.auth import app
from services.auth.config import load
from tools.service_thread import ServiceThread

usernames = st.from_regex(r"[A-Za-z0-9_.-]{3,32}", fullmatch=True)
passwords = st.text(min_size=8, max_size=256)
device_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class AuthThread(ServiceThread):
    """auth plus a client bus, in a thread of their own; ``run`` executes a coroutine there."""

    def __init__(self, config: Any, nats_url: str):
        super().__init__(app.main, config, also=self._open_client, name="auth-under-test")
        self.nats_url = nats_url
        self.passwords: dict[str, str] = {}  # lower-cased username -> its password
        self.bus: Bus

    async def _open_client(self, runtime: Any, nursery: trio.Nursery) -> None:
        await nursery.start(self._client)

    async def _client(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_bus(self.nats_url, name="property-client") as bus:
            self.bus = bus
            task_status.started()
            await trio.sleep_forever()


@pytest.fixture(scope="module")
def auth(common_env, nats_server) -> Iterator[AuthThread]:
    service = AuthThread(load(common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true")), nats_server.url)
    service.start()
    yield service
    service.stop()


# ---- async steps (run in the service's thread) ----------------------------------------------
async def call(bus: Bus, verb: str, payload: dict[str, Any]) -> Any:
    return await rpc.call(bus, f"im.auth.{verb}", payload, timeout=10)


async def error_code(bus: Bus, verb: str, payload: dict[str, Any]) -> int:
    try:
        await call(bus, verb, payload)
    except NatterjackError as exc:
        return exc.code
    return 0


async def ensure_user(auth: AuthThread, username: str, password: str) -> tuple[str, str]:
    """Register ``username`` (a name taken in any letter case must answer 4009); returns
    (username, the password it was registered with)."""
    key = username.lower()
    if key in auth.passwords:
        assert await error_code(auth.bus, "register",
                                {"username": username, "password": password}) == 4009
        return username, auth.passwords[key]
    await call(auth.bus, "register", {"username": username, "password": password})
    auth.passwords[key] = password
    return username, password


async def next_revoked(sub: Any, session_id: str) -> dict[str, Any]:
    with trio.fail_after(5):
        async for msg in sub:
            event = orjson.loads(msg.data)
            if event["session_id"] == session_id:
                return event
    raise AssertionError("subscription ended")


async def authentication_scenario(auth: AuthThread, username: str, password: str,
                                  device_id: str) -> None:
    bus = auth.bus
    username, password = await ensure_user(auth, username, password)
    wrong = password[:-1] + ("y" if password.endswith("x") else "x")  # same length: valid
    assert await error_code(bus, "login", {"username": username, "password": wrong}) == 4010
    grant = await call(bus, "login", {"username": username.swapcase(), "password": password,
                                      "device_id": device_id})
    assert grant["device_id"] == device_id
    keys = (await call(bus, "jwks", {}))["keys"]
    verifier = tokens.Verifier({k["kid"]: k["public_key_pem"] for k in keys})
    claims = verifier.verify(grant["access_token"])
    assert (claims.user_id, claims.device_id, claims.session_id) == \
        (grant["user_id"], device_id, grant["session_id"])
    assert (await call(bus, "verify", {"token": grant["access_token"]}))["live"]

    renewed = await call(bus, "refresh", {"refresh_token": grant["refresh_token"]})
    assert renewed["refresh_token"] != grant["refresh_token"]
    assert (renewed["user_id"], renewed["device_id"]) == (grant["user_id"], device_id)
    assert await error_code(bus, "verify", {"session_id": grant["session_id"]}) == 4010
    assert (await call(bus, "verify", {"session_id": renewed["session_id"]}))["live"]

    sub = await bus.subscribe(f"im.evt.session.revoked.{grant['user_id']}")
    await bus.call_aio(bus.nc.flush)
    try:
        await call(bus, "logout", {"session_id": renewed["session_id"]})
        event = await next_revoked(sub, renewed["session_id"])
        assert (event["device_id"], event["reason"]) == (device_id, "logout")
    finally:
        await sub.close()
    assert await error_code(bus, "verify", {"session_id": renewed["session_id"]}) == 4010
    assert await error_code(bus, "verify", {"token": renewed["access_token"]}) == 4010


async def listed_devices(bus: Bus, user_id: str) -> list[str]:
    listed = await call(bus, "sessions.list", {"user_id": user_id})
    return sorted(s["device_id"] for s in listed["sessions"])


async def concurrent_sessions_scenario(auth: AuthThread, username: str, password: str,
                                       devices: list[str], leaving: int) -> None:
    bus = auth.bus
    username, password = await ensure_user(auth, username, password)
    grants: dict[str, dict[str, Any]] = {}

    async def login(device_id: str) -> None:
        grants[device_id] = await call(bus, "login", {"username": username, "password": password,
                                                      "device_id": device_id})
    async with trio.open_nursery() as nursery:
        for device_id in devices:
            nursery.start_soon(login, device_id)
    user_id = grants[devices[0]]["user_id"]
    for device_id in await listed_devices(bus, user_id):  # from earlier examples of this name
        if device_id not in grants:
            await call(bus, "sessions.revoke", {"user_id": user_id, "device_id": device_id})
    assert len({g["session_id"] for g in grants.values()}) == len(devices)
    for device_id, grant in grants.items():
        live = await call(bus, "verify", {"token": grant["access_token"]})
        assert (live["user_id"], live["device_id"]) == (user_id, device_id)
    assert await listed_devices(bus, user_id) == sorted(devices)

    gone = devices[leaving % len(devices)]
    await call(bus, "logout", {"session_id": grants[gone]["session_id"]})
    assert await error_code(bus, "verify", {"session_id": grants[gone]["session_id"]}) == 4010
    for device_id in devices:
        if device_id != gone:
            assert (await call(bus, "verify", {"session_id": grants[device_id]["session_id"]}))[
                "live"]
    assert await listed_devices(bus, user_id) == sorted(d for d in devices if d != gone)


# ---- properties --------------------------------------------------------------------------------
@EXAMPLES
@given(username=usernames, password=passwords, device_id=device_ids)
def test_authentication_and_session_management(auth, username, password, device_id):
    """Feature: im-backend-service, Property 1: Authentication and Session Management

    For any valid user credentials, authentication should succeed and create a valid
    session that can be used for WebSocket connections, and when sessions expire or users
    disconnect, cleanup should occur properly.
    Requirements R1.1, R1.2, R1.3, R1.4: log in, connect with the token, expiry and disconnect.
    """
    auth.run(authentication_scenario, auth, username, password, device_id)


@EXAMPLES
@given(username=usernames, password=passwords,
       devices=st.lists(device_ids, min_size=1, max_size=5, unique=True),
       leaving=st.integers(0, 4))
def test_concurrent_session_support(auth, username, password, devices, leaving):
    """Feature: im-backend-service, Property 2: Concurrent Session Support

    For any user, the system should support multiple concurrent sessions across different
    devices without interference.
    Requirement R1.5: concurrent sessions on several devices.
    """
    auth.run(concurrent_sessions_scenario, auth, username, password, devices, leaving)
