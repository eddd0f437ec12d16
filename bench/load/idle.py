"""Scenario 2: idle WebSockets held open on one server or several, memory and connect rate.

Clients spread over worker processes, at most ``SOCKETS_PER_WORKER`` each (a process may
open 20,000 files here), each binding a loopback source address of its own (127.0.0.2, .3,
..., new ones for every measurement), so no source runs out of ephemeral ports. Each connection reads
whatever comes (the catch-up's frames, pings are answered by trio-websocket) and sends
nothing. Figures: connects/s from the order to open until the last handshake completed
(tokens issued beforehand: the handshake still verifies the token and asks auth whether
the session is live), and each server's RSS growth over its open connections / their count.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import queue
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from .clients import order
from .fleet import progress
from .procs import rss_kib

IN_FLIGHT = 64  # handshakes in flight per worker
SOCKETS_PER_WORKER = 8000
SOURCES = itertools.count(2)  # 127.0.0.<n>: every worker of every measurement its own


def workers_for(sockets: int, at_least: int) -> int:
    return max(at_least, math.ceil(sockets / SOCKETS_PER_WORKER))


async def hold(url: str, local: str, nursery: trio.Nursery, opened: Counter[str],
               held: Counter[str]) -> None:
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80,
                                        local_address=local)
    ws = await wrap_client_stream(nursery, stream, parts.hostname or "127.0.0.1",
                                  f"{parts.path}?{parts.query}")
    opened[parts.netloc] += 1
    held[parts.netloc] += 1
    nursery.start_soon(read_all, ws, parts.netloc, held)


async def read_all(ws: WebSocketConnection, server: str, held: Counter[str]) -> None:
    """Reads (pongs go out meanwhile) until the socket closes; then it is no longer held."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass
    finally:
        held[server] -= 1


async def stop_when(enough: Any, scope: trio.CancelScope) -> None:
    while not enough.is_set():  # noqa: ASYNC110 - a multiprocessing.Event, set by the parent
        await trio.sleep(0.25)
    scope.cancel()


async def open_and_hold(urls: list[str], local: str, orders: Any, enough: Any,
                        inbox: Any) -> None:
    """On order: open every URL (or as many as are open when ``enough`` is set), report,
    and hold them until the next order."""
    opened: Counter[str] = Counter()
    held: Counter[str] = Counter()  # opened and not closed since (e.g. by a ping timeout)
    failed = [0]
    limiter = trio.Semaphore(IN_FLIGHT)
    async with trio.open_nursery() as nursery:
        async def one(url: str) -> None:
            async with limiter:
                try:
                    await hold(url, local, nursery, opened, held)
                except Exception:  # noqa: BLE001 - counted: a refused socket is a figure
                    failed[0] += 1
        await order(orders)
        async with trio.open_nursery() as opening:
            opening.start_soon(stop_when, enough, opening.cancel_scope)
            async with trio.open_nursery() as each:
                for url in urls:
                    each.start_soon(one, url)
            opening.cancel_scope.cancel()
        inbox.put(("open", {"opened": dict(opened), "failed": failed[0]}))
        await order(orders)  # "held": how many are still open once the RSS was read
        inbox.put(("held", dict(held)))
        await order(orders)
        nursery.cancel_scope.cancel()


def idle_main(urls: list[str], local: str, orders: Any, enough: Any, inbox: Any) -> None:
    trio.run(open_and_hold, urls, local, orders, enough, inbox)


def start_workers(urls: list[str], workers: int) -> tuple[list[Any], list[Any], Any, Any]:
    """``workers`` processes, each with its share of the URLs and a source address of its
    own; and the event that tells them to stop opening."""
    ctx = multiprocessing.get_context("spawn")
    inbox, enough = ctx.Queue(), ctx.Event()
    orders = [ctx.Queue() for _ in range(workers)]
    procs = [ctx.Process(target=idle_main, daemon=True,
                         args=(urls[w::workers], f"127.0.0.{next(SOURCES)}", orders[w], enough,
                               inbox))
             for w in range(workers)]
    for p in procs:
        p.start()
    return procs, orders, enough, inbox


def stop_workers(procs: list[Any], orders: list[Any], enough: Any) -> None:
    enough.set()  # a worker still opening stops
    for box in orders:
        box.put("close")
        box.put("close")  # a worker stopped before "held" reads one order more
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()


def spread(servers: dict[str, str], tokens: list[str]) -> list[str]:
    """One URL per token, dealt out over the servers' WebSocket URLs in turn."""
    urls = list(servers.values())
    return [f"{urls[i % len(urls)]}?token={t}" for i, t in enumerate(tokens)]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure(label: str, servers: dict[str, str], pids: dict[str, int], urls: list[str],
            workers: int, seconds: float = 0) -> dict[str, Any]:
    """Open every URL (each on one of ``servers``: name -> ws URL) from at least ``workers``
    processes; connect rate overall, RSS and open files of each server (``pids``). Opening
    stops after ``seconds`` (0: 60 + 1 s per 20 sockets) with what is open by then."""
    workers = workers_for(len(urls), workers)
    procs, orders, enough, inbox = start_workers(urls, workers)
    try:
        time.sleep(2.0)  # the workers are up (spawn imports trio) before the clock starts
        before, started = {n: rss_kib(pids[n]) for n in servers}, time.monotonic()
        for box in orders:
            box.put("open")
        answers, cut = collect(label, inbox, enough, workers, len(urls), started,
                               seconds or 60 + len(urls) / 20)
        elapsed = time.monotonic() - started
        time.sleep(min(5.0, 1.0 + len(urls) / 10_000))  # the servers settle (buffers,
        # presence writes) before RSS is read
        after = {n: (rss_kib(pids[n]), open_fds(pids[n])) for n in servers}
        held = still_held(orders, inbox)
    finally:
        stop_workers(procs, orders, enough)
    opened = Counter[str]()
    for answer in answers:
        opened.update(answer["opened"])
    each = {n: server_figures(opened[urlsplit(url).netloc], held[urlsplit(url).netloc],
                              before[n], *after[n]) for n, url in servers.items()}
    worst = max(each.values(), key=lambda s: s["kib_per_connection"])
    result = {**worst, "wanted": len(urls), "opened": sum(opened.values()), "workers": workers,
              "held": sum(held.values()), "cut_at_s": cut, "servers": each,
              "failed": sum(a["failed"] for a in answers),
              "connects_per_s": sum(opened.values()) / elapsed}
    print(f"[{label}] idle: {result}", flush=True)
    return result


def still_held(orders: list[Any], inbox: Any, timeout: float = 60) -> Counter[str]:
    """Sockets still open per server (host:port), summed over the workers."""
    for box in orders:
        box.put("held")
    held = Counter[str]()
    for _ in orders:
        tag, counts = inbox.get(timeout=timeout)
        assert tag == "held", tag
        held.update(counts)
    return held


def server_figures(opened: int, held: int, rss_before: int, rss_after: int,
                   fds: int) -> dict[str, Any]:
    """RSS growth per socket the server still holds (a socket it closed frees its memory)."""
    return {"opened": opened, "held": held, "rss_before_kib": rss_before,
            "rss_after_kib": rss_after, "kib_per_connection": (rss_after - rss_before) / max(held, 1),
            "open_files": fds}


def collect(label: str, inbox: Any, enough: Any, workers: int, wanted: int, started: float,
            timeout: float) -> tuple[list[dict[str, Any]], float | None]:
    """Every worker's answer; past ``timeout`` the workers stop opening and report what
    they hold (then the seconds it was cut at come back too, else None)."""
    answers: list[dict[str, Any]] = []
    cut: float | None = None
    while len(answers) < workers:
        elapsed = time.monotonic() - started
        progress(f"[{label}] idle: opening {wanted:,} WebSockets, {elapsed:.0f} s, "
                 f"{len(answers)}/{workers} workers done" + (" (cut: time is up)" if cut else ""))
        try:
            answers.append(inbox.get(timeout=0.5)[1])
        except queue.Empty:
            if cut is None and elapsed > timeout:
                cut = elapsed
                enough.set()
            elif cut is not None and elapsed > cut + 60:
                raise TimeoutError(f"idle: {len(answers)} of {workers} workers done") from None
    progress("")
    return answers, cut
