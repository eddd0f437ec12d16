"""Access tokens for many sockets, through the product's own API, from several processes.

Every socket needs a device session of its own: a token from ``POST /api/v1/auth/login``.
The setup registers ``n / devices`` users and logs each in ``devices`` times (a login
without ``device_id`` opens a new device), so a user may hold several devices, as the
contract allows. Workers (multiprocessing, spawn) share the users out, each sending from
source addresses of its own (127.0.<w+1>.1 … .8): auth counts and locks login attempts per
client address in Redis under WATCH, and a single address makes every concurrent login
race on one key. A login round finishes before the next starts, so one user's logins
never queue on its row lock. Rate limits are lifted by the stack's environment
(``NJ_AUTH_REGISTER_PER_IP_PER_HOUR``, ``NJ_AUTH_LOGIN_IP_FREE_ATTEMPTS``); a 429
(``Retry-After``) is waited out and tried again, a bounded number of times.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import time
from typing import Any

import httpx
import trio

from .fleet import progress

PASSWORD = "benchmark-pw"
SOURCES = 8  # client addresses per worker
IN_FLIGHT = 24  # requests in flight per worker
TRIES = 6
TOKENS_PER_WORKER = 4000  # more tokens: more workers, up to MAX_WORKERS
MAX_WORKERS = 4


def workers_for(n: int) -> int:
    return max(1, min(MAX_WORKERS, math.ceil(n / TOKENS_PER_WORKER)))


class Issuer:
    """One worker's HTTP clients (one per source address) and its running count."""

    def __init__(self, api: str, worker: int, done: Any) -> None:
        self.clients = [httpx.AsyncClient(
            base_url=api, timeout=60, limits=httpx.Limits(max_connections=IN_FLIGHT),
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.{worker + 1}.{s + 1}"))
            for s in range(SOURCES)]
        self.limiter = trio.Semaphore(IN_FLIGHT)
        self.done = done

    async def post(self, i: int, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST from source address ``i % SOURCES``; a 429 waits ``Retry-After`` and retries."""
        async with self.limiter:
            for _ in range(TRIES):
                answer = await self.clients[i % SOURCES].post(path, json=body)
                if answer.status_code != 429:
                    return answer
                await trio.sleep(float(answer.headers.get("Retry-After", "1")))
        raise RuntimeError(f"{path}: still rate limited after {TRIES} tries: {answer.text}")

    async def register(self, i: int, name: str) -> None:
        answer = await self.post(i, "/api/v1/auth/register",
                                 {"username": name, "password": PASSWORD})
        assert answer.status_code == 201, answer.text

    async def login(self, i: int, name: str, tokens: list[str]) -> None:
        answer = await self.post(i, "/api/v1/auth/login",
                                 {"username": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        tokens.append(answer.json()["access_token"])
        with self.done.get_lock():
            self.done.value += 1

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def issue_share(api: str, worker: int, names: list[str], devices: int,
                      done: Any) -> list[str]:
    """Register ``names``, then log each in ``devices`` times, round by round."""
    issuer, tokens = Issuer(api, worker, done), list[str]()
    try:
        for round_ in (None, *range(devices)):
            async with trio.open_nursery() as nursery:
                for i, name in enumerate(names):
                    if round_ is None:
                        nursery.start_soon(issuer.register, i, name)
                    else:
                        nursery.start_soon(issuer.login, i, name, tokens)
    finally:
        await issuer.close()
    return tokens


def issue_main(api: str, worker: int, names: list[str], devices: int, done: Any,
               inbox: Any) -> None:
    try:
        inbox.put((worker, trio.run(issue_share, api, worker, names, devices, done)))
    except BaseException as exc:
        inbox.put((worker, f"{type(exc).__name__}: {exc}"))
        raise


def issue_tokens(api: str, n: int, devices: int = 1,
                 timeout: float = 3600) -> tuple[list[str], float]:
    """``n`` access tokens, each of its own device session (``ceil(n / devices)`` users),
    and the seconds they took."""
    users = math.ceil(n / devices)
    tag = time.time_ns() % 10**9
    names = [f"b{tag}_{u}" for u in range(users)]
    workers = workers_for(n)
    ctx = multiprocessing.get_context("spawn")
    done, inbox = ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=issue_main, daemon=True,
                         args=(api, w, names[w::workers], devices, done, inbox))
             for w in range(workers)]
    for p in procs:
        p.start()
    started = time.monotonic()
    try:
        found = gather(inbox, workers, done, n, timeout)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [t for w in sorted(found) for t in found[w]][:n], time.monotonic() - started


def gather(inbox: Any, workers: int, done: Any, n: int, timeout: float) -> dict[int, list[str]]:
    started, found = time.monotonic(), dict[int, list[str]]()
    while len(found) < workers:
        elapsed = time.monotonic() - started
        progress(f"tokens: {done.value:,} of {n:,} in {elapsed:.0f} s "
                 f"({done.value / max(elapsed, 1e-3):,.0f}/s, {workers} processes)")
        try:
            worker, tokens = inbox.get(timeout=0.5)
        except queue.Empty:
            if elapsed > timeout:
                raise TimeoutError(f"tokens: {len(found)} of {workers} workers done") from None
            continue
        if isinstance(tokens, str):
            raise RuntimeError(f"token worker {worker} failed: {tokens}")
        found[worker] = tokens
    elapsed = time.monotonic() - started
    progress("")
    print(f"tokens: {n:,} in {elapsed:.1f} s ({n / elapsed:,.0f}/s, {workers} processes)",
          flush=True)
    return found
