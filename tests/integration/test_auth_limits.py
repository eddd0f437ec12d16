"""auth's login lockouts and registration limits against real Redis (short lock times)."""

from __future__ import annotations

import secrets
from typing import Any

import trio

from libs import rpc
from libs.bus import Bus
from libs.errors import NatterjackError
from services.auth import app
from services.auth.config import load

PASSWORD = "correct horse battery"
LIMITS = {"NJ_AUTH_LOGIN_FREE_ATTEMPTS": "3", "NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS": "5",
          "NJ_AUTH_LOCKOUT_BASE_S": "1", "NJ_AUTH_LOCKOUT_MAX_S": "2",
          "NJ_AUTH_LOGIN_WINDOW_S": "60", "NJ_AUTH_REGISTER_PER_IP_PER_HOUR": "2"}


async def call(bus: Bus, verb: str, payload: dict[str, Any]) -> Any:
    return await rpc.call(bus, f"im.auth.{verb}", payload, timeout=10)


async def outcome(bus: Bus, verb: str, payload: dict[str, Any]) -> int | NatterjackError:
    """0 on success, else the error (its code in .code)."""
    try:
        await call(bus, verb, payload)
    except NatterjackError as exc:
        return exc
    return 0


async def code_of(bus: Bus, verb: str, payload: dict[str, Any]) -> int:
    result = await outcome(bus, verb, payload)
    return result if isinstance(result, int) else result.code


async def limited(bus: Bus, verb: str, payload: dict[str, Any], scope: str) -> int:
    """Asserts a 4029 of ``scope``; returns its retry_after_ms."""
    result = await outcome(bus, verb, payload)
    assert isinstance(result, NatterjackError) and result.code == 4029, result
    assert result.details is not None and result.details["scope"] == scope
    retry_after = result.details["retry_after_ms"]
    assert isinstance(retry_after, int) and retry_after > 0
    return retry_after


def _name() -> str:
    return f"Lim_{secrets.token_hex(4)}"


async def _register(bus: Bus) -> str:
    name = _name()
    await call(bus, "register", {"username": name, "password": PASSWORD})
    return name


def _wrong(name: str, **extra: str) -> dict[str, Any]:
    return {"username": name, "password": "wrong password", **extra}


async def test_login_lockout_and_register_limits(common_env):
    config = load(common_env("auth", NJ_AUTH_DEV_GENERATE_KEY="true", **LIMITS))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        bus = runtime.bus
        await _username_lockout_grows_then_success_clears(bus)
        await _unknown_usernames_lock_alike(bus)
        await _concurrent_guesses_cannot_outrun_the_count(bus)
        await _client_address_lockout(bus)
        await _register_per_address(bus)
        runtime.stopping.set()


async def _username_lockout_grows_then_success_clears(bus: Bus) -> None:
    name = await _register(bus)
    for _ in range(3):
        assert await code_of(bus, "login", _wrong(name)) == 4010
    # Locked: even the right password is refused, without checking it.
    first = await limited(bus, "login", {"username": name, "password": PASSWORD}, "username")
    assert 0 < first <= 1000
    await trio.sleep(first / 1000 + 0.05)
    assert await code_of(bus, "login", _wrong(name.upper())) == 4010  # same name, any case
    second = await limited(bus, "login", _wrong(name), "username")
    assert 1000 < second <= 2000  # doubled
    await trio.sleep(second / 1000 + 0.05)
    assert await code_of(bus, "login", {"username": name, "password": PASSWORD}) == 0
    for _ in range(3):  # the success cleared the count
        assert await code_of(bus, "login", _wrong(name)) == 4010
    await limited(bus, "login", _wrong(name), "username")


async def _unknown_usernames_lock_alike(bus: Bus) -> None:
    """A lockout does not tell whether the name exists."""
    name = _name()
    for _ in range(3):
        assert await code_of(bus, "login", _wrong(name)) == 4010
    await limited(bus, "login", _wrong(name), "username")


async def _concurrent_guesses_cannot_outrun_the_count(bus: Bus) -> None:
    name = await _register(bus)
    codes: list[int] = []

    async def guess() -> None:
        codes.append(await code_of(bus, "login", _wrong(name)))
    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(guess)
    assert sorted(codes) == [4010] * 3 + [4029] * 9


async def _client_address_lockout(bus: Bus) -> None:
    ip = f"203.0.113.{secrets.randbelow(250) + 1}"
    names = [await _register(bus) for _ in range(6)]
    for name in names[:5]:  # one failure each: no username lock, five for the address
        assert await code_of(bus, "login", _wrong(name, client_ip=ip)) == 4010
    right = {"username": names[5], "password": PASSWORD}
    await limited(bus, "login", {**right, "client_ip": ip}, "client_ip")
    assert await code_of(bus, "login", {**right, "client_ip": "198.51.100.7"}) == 0
    assert await code_of(bus, "login", right) == 0  # no address given: no address limit
    # IPv6: the whole /64 shares one count.
    net = f"2001:db8:{secrets.randbelow(9999)}:1::"
    for i in range(5):
        assert await code_of(bus, "login", _wrong(names[i], client_ip=f"{net}{i + 1}")) == 4010
    await limited(bus, "login", {**right, "client_ip": f"{net}ff"}, "client_ip")
    bad = await outcome(bus, "login", {**right, "client_ip": "x" * 65})
    assert isinstance(bad, NatterjackError) and bad.details == {"field": "client_ip"}


async def _register_per_address(bus: Bus) -> None:
    ip = f"192.0.2.{secrets.randbelow(250) + 1}"
    for _ in range(2):
        await call(bus, "register", {"username": _name(), "password": PASSWORD, "client_ip": ip})
    wait = await limited(bus, "register", {"username": _name(), "password": PASSWORD,
                                           "client_ip": ip}, "register")
    assert 3_500_000 < wait <= 3_600_000
    await call(bus, "register", {"username": _name(), "password": PASSWORD,
                                 "client_ip": "198.51.100.9"})
    await call(bus, "register", {"username": _name(), "password": PASSWORD})
