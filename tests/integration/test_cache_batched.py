"""Cache.batched: the pipelines of concurrent callers share round trips (real Redis)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.exceptions
import trio

from libs.cache import Cache, CacheUnavailable

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def cache(redis_url: str, redis_prefix: str) -> AsyncIterator[Cache]:
    made = Cache(redis_url, f"{redis_prefix}batched:{secrets.token_hex(3)}:")
    yield made
    made.close()


async def test_each_caller_gets_its_own_results_in_order(cache: Cache) -> None:
    key = f"{cache.keys.prefix}counter"
    got: dict[int, list[Any]] = {}

    async def one(i: int) -> None:
        got[i] = await cache.batched(lambda pipe: (pipe.incr(key), pipe.set(f"{key}:{i}", i),
                                                   pipe.get(f"{key}:{i}")))
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    assert sorted(result[0] for result in got.values()) == list(range(1, 201))  # every INCR once
    assert all(result[1:] == [True, str(i).encode()] for i, result in got.items())
    assert cache._batcher.batches < 200 / 4  # shared round trips, not one per caller


async def test_a_failing_command_or_build_fails_only_its_caller(cache: Cache) -> None:
    key = f"{cache.keys.prefix}text"
    await cache.run(lambda r: r.set(key, "x"))
    outcomes: dict[str, Any] = {}

    async def attempt(name: str, build: Any) -> None:
        try:
            outcomes[name] = await cache.batched(build)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
            outcomes[name] = type(exc)

    def broken(pipe: Any) -> None:
        pipe.get(key)
        raise ValueError("bad build")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, "wrong type", lambda pipe: pipe.incr(key))
        nursery.start_soon(attempt, "broken", broken)
        nursery.start_soon(attempt, "fine", lambda pipe: pipe.get(key))
    assert outcomes == {"wrong type": redis.exceptions.ResponseError, "broken": ValueError,
                        "fine": [b"x"]}


async def test_redis_away_fails_every_caller_and_the_next_ones_run(redis_prefix: str) -> None:
    dead = Cache("redis://127.0.0.1:1/0", redis_prefix, socket_timeout=0.2)
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await dead.batched(lambda pipe: pipe.get("k"))
        except CacheUnavailable as exc:
            errors.append(exc)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert len(errors) == 10 and len({id(e) for e in errors}) == 10
    assert not dead._batcher.leading and not dead._batcher.queue
    dead.close()


async def test_cancelled_callers_do_not_strand_the_others(cache: Cache) -> None:
    """Waiting is shielded: a cancelled leader (or next in line) still finishes its round
    trip and hands on, so every caller behind it gets an answer."""
    key = f"{cache.keys.prefix}n"
    done: list[int] = []
    scopes: list[trio.CancelScope] = []

    async def one() -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            done.append((await cache.batched(lambda pipe: pipe.incr(key)))[0])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(one)
            await trio.lowlevel.checkpoint()
            for scope in scopes[::2]:
                scope.cancel()
    assert sorted(done) == list(range(1, 51))
    assert await cache.batched(lambda pipe: pipe.get(key)) == [b"50"]
