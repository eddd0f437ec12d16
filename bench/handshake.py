"""WebSocket handshake rate of one gateway process, against a bare trio-websocket server.

    python -m bench.handshake [--connections N] [--write BENCHMARKS.md]

natterjack's handshake verifies the EdDSA token, asks auth whether the session is live,
registers presence in Redis and asks delivery-retry for the catch-up plan. The baseline,
in the same run with the same client, is a bare trio-websocket server that accepts and
does nothing else. Clients run in this process (trio-websocket), 50 handshakes in flight.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

from libs.natsd import free_port
from tools.stack import isolated_stack

from . import report

BARE_SERVER = """
import sys, trio
from trio_websocket import serve_websocket
async def handler(request):
    ws = await request.accept()
    try:
        while True:
            await ws.get_message()
    except Exception:
        pass
trio.run(serve_websocket, handler, "127.0.0.1", int(sys.argv[1]), None)
"""


async def open_all(urls: list[str], in_flight: int = 50) -> float:
    """Open every URL (holding them open) and return connections per second."""
    limiter = trio.Semaphore(in_flight)
    opened = trio.Event()
    count = 0

    async def one(url: str) -> None:
        nonlocal count
        async with limiter, open_websocket_url(url) as ws:
            count += 1
            if count == len(urls):
                opened.set()
            limiter.release()
            await opened.wait()
            await limiter.acquire()
            await ws.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(one, url)
        await opened.wait()
        elapsed = time.perf_counter() - start
    return len(urls) / elapsed


async def users_with_ids(api: str, n: int) -> list[tuple[str, str]]:
    """Register and log in ``n`` users: [(access_token, user_id)]."""
    found: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        async def one(i: int) -> None:
            name = f"b{i}_{time.time_ns() % 10**8}"
            await http.post("/api/v1/auth/register", json={"username": name, "password": "benchmark-pw"})
            login = await http.post("/api/v1/auth/login", json={"username": name, "password": "benchmark-pw"})
            assert login.status_code == 200, login.text
            found.append((login.json()["access_token"], login.json()["user_id"]))
        limiter = trio.Semaphore(16)

        async def limited(i: int) -> None:
            async with limiter:
                await one(i)
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(limited, i)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])
    try:
        time.sleep(0.5)
        bare_rate = trio.run(open_all, [f"ws://127.0.0.1:{port}/ws"] * args.connections)
        with isolated_stack({"NJ_ARGON2_TIME_COST": "1", "NJ_ARGON2_MEMORY_KIB": "8"}) as stack:
            tokens = [t for t, _ in trio.run(users_with_ids, stack.api, args.connections)]
            ours = trio.run(open_all, [f"{stack.ws_url}?token={t}" for t in tokens])
    finally:
        bare.terminate()
    body = report.table(["server", "handshakes/s", "vs bare"], [
        ["bare trio-websocket (accept only)", f"{bare_rate:,.0f}", "1.00"],
        ["natterjack gateway (token + session check + presence + catch-up plan)",
         f"{ours:,.0f}", f"{ours / bare_rate:.2f}"]])
    body += f"\n\n{args.connections} connections, 50 handshakes in flight, client in the same machine."
    print(body)
    if args.write:
        report.write_section(Path(args.write), "handshake",
                             f"python -m bench.handshake --connections {args.connections} --write {args.write}", body)


if __name__ == "__main__":
    main()
