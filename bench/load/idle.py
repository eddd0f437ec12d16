"""Scenario 2: idle WebSockets held open on one server, their memory and connect rate.

Clients spread over worker processes, each binding its own loopback source address
(127.0.0.2, .3, ...), so no source runs out of ephemeral ports. Each connection reads
whatever comes (the catch-up's frames, pings are answered by trio-websocket) and sends
nothing. Figures: connects/s from the order to open until the last handshake completed
(tokens issued beforehand: the handshake still verifies the token and asks auth whether
the session is live), and the server's RSS growth over the open connections / count.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from .clients import order
from .fleet import progress
from .procs import rss_kib

IN_FLIGHT = 64  # handshakes in flight per worker


async def hold(url: str, local: str, nursery: trio.Nursery, opened: list[int]) -> None:
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80,
                                        local_address=local)
    ws = await wrap_client_stream(nursery, stream, parts.hostname or "127.0.0.1",
                                  f"{parts.path}?{parts.query}")
    opened[0] += 1
    nursery.start_soon(read_all, ws)


async def read_all(ws: WebSocketConnection) -> None:
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass


async def open_and_hold(urls: list[str], local: str, orders: Any, inbox: Any) -> None:
    opened, failed = [0], [0]
    limiter = trio.Semaphore(IN_FLIGHT)
    async with trio.open_nursery() as nursery:
        async def one(url: str) -> None:
            async with limiter:
                try:
                    await hold(url, local, nursery, opened)
                except Exception:  # noqa: BLE001 - counted: a refused socket is a figure
                    failed[0] += 1
        await order(orders)
        async with trio.open_nursery() as opening:
            for url in urls:
                opening.start_soon(one, url)
        inbox.put(("open", {"opened": opened[0], "failed": failed[0]}))
        await order(orders)
        nursery.cancel_scope.cancel()


def idle_main(urls: list[str], local: str, orders: Any, inbox: Any) -> None:
    trio.run(open_and_hold, urls, local, orders, inbox)


def start_workers(urls: list[str], workers: int) -> tuple[list[Any], list[Any], Any]:
    """``workers`` processes, each with its share of the URLs and a source address of its own."""
    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue()
    orders = [ctx.Queue() for _ in range(workers)]
    procs = [ctx.Process(target=idle_main, daemon=True,
                         args=(urls[w::workers], f"127.0.0.{w + 2}", orders[w], inbox))
             for w in range(workers)]
    for p in procs:
        p.start()
    return procs, orders, inbox


def stop_workers(procs: list[Any], orders: list[Any]) -> None:
    for box in orders:
        box.put("close")
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()


def measure(label: str, urls: list[str], server_pid: int, workers: int) -> dict[str, Any]:
    """Open every URL from ``workers`` processes; RSS and connect rate of ``server_pid``."""
    procs, orders, inbox = start_workers(urls, workers)
    try:
        time.sleep(2.0)  # the workers are up (spawn imports trio) before the clock starts
        rss_before, started = rss_kib(server_pid), time.monotonic()
        for box in orders:
            box.put("open")
        answers = collect(label, inbox, workers, len(urls), started)
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # the server settles (buffers, presence writes) before RSS is read
        rss_after = rss_kib(server_pid)
    finally:
        stop_workers(procs, orders)
    opened = sum(a["opened"] for a in answers)
    result = {"wanted": len(urls), "opened": opened, "failed": sum(a["failed"] for a in answers),
              "connects_per_s": opened / elapsed, "rss_before_kib": rss_before,
              "rss_after_kib": rss_after,
              "kib_per_connection": (rss_after - rss_before) / max(opened, 1)}
    print(f"[{label}] idle: {result}", flush=True)
    return result


def collect(label: str, inbox: Any, workers: int, wanted: int, started: float,
            timeout: float = 300) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = []
    while len(answers) < workers:
        progress(f"[{label}] idle: opening {wanted:,} WebSockets, "
                 f"{time.monotonic() - started:.0f} s, {len(answers)}/{workers} workers done")
        try:
            answers.append(inbox.get(timeout=0.5)[1])
        except queue.Empty:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"idle: {len(answers)} of {workers} workers done") from None
    progress("")
    return answers
