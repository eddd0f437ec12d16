"""The gateway's own cost of idle sockets, without the rest of the stack.

    python -m bench.load.idle_gateway [--sockets N] [--warmup N] [--ping-interval S]
                                      [--hold S] [--tracemalloc] [--top N] [--profile]
                                      [--profile-open] [--sort KEY] [--gc-threshold A B C]

One gateway edge (``WebSocketEdge``: the real handshake, connection, reader, writer,
catch-up and keepalive code) in this process, with real token verification (Ed25519) but
the bus answered in-process (auth's session check and delivery-retry's ``im.dlv.sync``
say "live" and "nothing to catch up") and no Redis (presence off); the clients in one
process of their own (trio-websocket, answering pings). Figures, each over the sockets
opened after ``--warmup`` already are:
- RSS growth per socket (VmRSS), or with ``--tracemalloc`` the Python allocations per
  socket by source line (tracemalloc's own overhead inflates RSS then: read one or the other);
- gateway CPU per handshake while they open, and handshakes/s;
- gateway CPU per keepalive ping while ``--hold`` seconds pass with every socket pinged each
  ``--ping-interval``, and CPU s/s then, with the garbage collector's share (wall time, so
  inflated on a busy machine). ``--profile`` / ``--profile-open``: cProfile of either phase.
Run it from another checkout's directory to measure that code (``-m`` puts the current
directory first on the path): same command, same machine, alternating, for a ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import multiprocessing
import pstats
import resource
import time
import tracemalloc
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

from libs import log, tokens
from services.gateway import config as gateway_config
from services.gateway.handlers import FrameHandlers, Hub
from services.gateway.keys import KeyRing
from services.gateway.ws import WebSocketEdge

from .procs import rss_kib

ANSWERS = {"im.auth.verify": {"ok": {}}, "im.dlv.sync": {"ok": {"chats": []}}}
IN_FLIGHT = 64


class _Reply:
    is_no_responders = False

    def __init__(self, data: bytes):
        self.data = data


class InProcessBus:
    """Answers the two requests a connect makes, after one checkpoint (no NATS)."""

    async def request(self, subject: str, data: bytes, *, timeout: float, **_: Any) -> _Reply:
        await trio.lowlevel.checkpoint()
        return _Reply(orjson.dumps(ANSWERS[subject]))

    async def publish(self, subject: str, data: bytes, **_: Any) -> None:
        await trio.lowlevel.checkpoint()


class GcClock:
    """Time spent in the garbage collector, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.counts[info["generation"]] += 1

    def reset(self) -> None:
        self.seconds, self.counts = [0.0, 0.0, 0.0], [0, 0, 0]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- clients (a process of their own) ------------------------------------------------
async def _clients(port: int, tokens_: list[str], orders: Any, done: Any) -> None:
    async with trio.open_nursery() as nursery:
        limiter = trio.Semaphore(IN_FLIGHT)
        start = 0
        while (count := await trio.to_thread.run_sync(orders.get)) is not None:
            async with trio.open_nursery() as opening:
                for token in tokens_[start:start + count]:
                    opening.start_soon(nursery.start, _hold, port, token, limiter)
                start += count
            done.put(start)
        nursery.cancel_scope.cancel()


async def _hold(port: int, token: str, limiter: trio.Semaphore,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Open one socket (counted once its handshake is answered) and read until it closes."""
    async with trio.open_nursery() as nursery:
        async with limiter:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", f"/ws?token={token}")
        task_status.started()
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass


def client_main(port: int, tokens_: list[str], orders: Any, done: Any) -> None:
    trio.run(_clients, port, tokens_, orders, done)


# ---- the gateway edge ----------------------------------------------------------------
def make_edge(ping_interval_s: float) -> tuple[WebSocketEdge, str]:
    cfg = gateway_config.load({"NJ_GATEWAY_WS_PORT": "0", "NJ_GATEWAY_WS_HOST": "127.0.0.1",
                               "NJ_GATEWAY_PING_INTERVAL_S": str(ping_interval_s),
                               "NJ_GATEWAY_PING_TIMEOUT_S": "10"})
    bus: Any = InProcessBus()
    private = tokens.generate_private_key_pem()
    keys = KeyRing(bus, 5.0)
    keys.verifier.update({"k1": tokens.public_pem(private)})
    keys._fetched_at = 1e18  # noqa: SLF001 - never refetched: the key is set here
    edge = WebSocketEdge(cfg, "gw-bench", Hub(), FrameHandlers(cfg, bus), keys, None)
    return edge, private


def make_tokens(private: str, count: int) -> list[str]:
    now = int(time.time())
    return [tokens.sign(private, "k1", tokens.Claims(f"u{i}", "d1", f"s{i}", now + 3600), now)
            for i in range(count)]


async def _wait_open(orders: Any, done: Any, count: int) -> float:
    started = trio.current_time()
    orders.put(count)
    await trio.to_thread.run_sync(done.get)
    return trio.current_time() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    edge, private = make_edge(args.ping_interval)
    tokens_ = make_tokens(private, args.warmup + args.sockets)
    ctx = multiprocessing.get_context("spawn")
    orders, done = ctx.Queue(), ctx.Queue()
    result: dict[str, Any] = {}
    gc_clock = GcClock()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(edge.serve)
        client = ctx.Process(target=client_main, args=(server.port, tokens_, orders, done), daemon=True)
        client.start()
        await _wait_open(orders, done, args.warmup)
        await trio.sleep(2)
        gc.collect()
        snap = tracemalloc.take_snapshot() if args.tracemalloc else None
        rss, cpu = rss_kib_self(), cpu_s()
        profile = cProfile.Profile() if args.profile_open else None
        if profile:
            profile.enable()
        seconds = await _wait_open(orders, done, args.sockets)
        cpu_open = cpu_s() - cpu
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
        await trio.sleep(2)
        gc.collect()
        held = len(edge.hub.all())
        result.update(sockets=held, rss_kib_per_socket=round((rss_kib_self() - rss) / args.sockets, 2),
                      handshakes_per_s=round(args.sockets / seconds),
                      cpu_ms_per_handshake=round(cpu_open * 1000 / args.sockets, 3))
        if snap is not None:
            report_allocations(snap, tracemalloc.take_snapshot(), args.sockets, args.top)
        if args.hold:
            profile = cProfile.Profile() if args.profile else None
            gc_clock.reset()
            cpu, started = cpu_s(), trio.current_time()
            if profile:
                profile.enable()
            await trio.sleep(args.hold)
            if profile:
                profile.disable()
            spent, elapsed = cpu_s() - cpu, trio.current_time() - started
            if profile:
                pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
            pings = held * elapsed / args.ping_interval
            result.update(hold_cpu_s_per_s=round(spent / elapsed, 4), pings_per_s=round(pings / elapsed),
                          cpu_us_per_ping=round(spent * 1e6 / pings, 1),
                          held_after=len(edge.hub.all()),
                          gc_s_per_s=[round(t / elapsed, 4) for t in gc_clock.seconds],
                          gc_runs=gc_clock.counts)
        orders.put(None)
        nursery.cancel_scope.cancel()
    client.join(timeout=10)
    return result


def rss_kib_self() -> int:
    import os
    return rss_kib(os.getpid())


def report_allocations(before: Any, after: Any, sockets: int, top: int) -> None:
    """Python allocations per socket, each charged to the innermost gateway line that made
    it (else trio-websocket's, else the innermost frame), so a trio object shows up where
    the gateway or trio-websocket asked for it."""
    owners: dict[str, list[int]] = {}
    for stat in after.compare_to(before, "traceback"):
        owner = _owner(stat.traceback)
        entry = owners.setdefault(owner, [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    total = sum(size for size, _ in owners.values())
    print(f"tracemalloc: {total / sockets:.0f} B per socket ({total / 1024 / sockets:.2f} KiB)")
    for owner, (size, count) in sorted(owners.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {size / sockets:8.0f} B {count / sockets:6.2f} blocks  {owner}")


def _owner(traceback: Any) -> str:
    frames = list(reversed(traceback))  # innermost first
    for marker in ("services/gateway/", "trio_websocket/", "wsproto/"):
        for frame in frames:
            if marker in frame.filename:
                return f"{marker}{frame.filename.split(marker)[-1]}:{frame.lineno}"
    frame = frames[0]
    return f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="cProfile the gateway during --hold")
    parser.add_argument("--profile-open", action="store_true", help="cProfile it while the sockets open")
    parser.add_argument("--gc-threshold", type=int, nargs=3, help="gc.set_threshold for the gateway")
    parser.add_argument("--sort", default="tottime", help="pstats order (tottime, cumtime)")
    args = parser.parse_args()
    log.setup("gateway", "warning")
    if args.gc_threshold:
        gc.set_threshold(*args.gc_threshold)
    if args.tracemalloc:
        tracemalloc.start(30)
    print(orjson.dumps(trio.run(run, args)).decode(), flush=True)


if __name__ == "__main__":
    main()
