"""Bus benchmark: raw asyncio nats-py vs natterjack's trio bus, same server, same run.

    python -m bench.bus [--quick] [--write BENCHMARKS.md]

Starts its own nats-server (JetStream, sync_interval: always) on a free port. Each
figure is measured for both sides back to back; the ratio is what matters on a noisy
machine. Core publish counts messages received by a subscriber in the same process.
Both sides publish what the services publish: a JSON object with a trace id and
``Content-Type`` header (the trio bus adds them itself; raw nats-py is handed them).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import nats
import trio

from libs import log
from libs.bus import js_publish, open_bus
from libs.natsd import start_nats

from . import report

PAYLOAD = b"{\"x\":\"" + b"x" * 192 + b"\"}"
TRACE = "bench0000000000000000000000"
HEADERS = {log.TRACE_HEADER: TRACE, "Content-Type": "application/json"}


async def raw_side(url: str, n_pub: int, n_req: int, n_js: int, stream: str) -> dict[str, float]:
    nc = await nats.connect(url)
    results: dict[str, float] = {}

    async def echo(msg):  # noqa: ANN001
        await nc.publish(msg.reply, b"ok")
    await nc.subscribe("bench.echo", cb=echo)
    got = 0

    async def count(_msg):  # noqa: ANN001
        nonlocal got
        got += 1
    await nc.subscribe("bench.raw.flood", cb=count)
    start = time.perf_counter()
    for _ in range(n_pub):
        await nc.publish("bench.raw.flood", PAYLOAD, headers=HEADERS)
    while got < n_pub and time.perf_counter() - start < 60:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.001)
    results["core publish (msg/s)"] = got / (time.perf_counter() - start)
    await nc.request("bench.echo", b"x", timeout=5)
    start = time.perf_counter()
    for _ in range(n_req):
        await nc.request("bench.echo", b"x", timeout=5)
    results["request RTT (µs)"] = (time.perf_counter() - start) / n_req * 1e6
    js = nc.jetstream()
    start = time.perf_counter()
    for i in range(n_js):
        await js.publish(f"{stream}.raw", PAYLOAD, headers={"Nats-Msg-Id": f"raw-s-{i}"})
    results["JetStream publish, sequential (msg/s)"] = n_js / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*(js.publish(f"{stream}.raw", PAYLOAD, headers={"Nats-Msg-Id": f"raw-c-{i}"})
                           for i in range(n_js * 4)))
    results["JetStream publish, 256 in flight (msg/s)"] = n_js * 4 / (time.perf_counter() - start)
    await nc.close()
    return results


async def trio_side(url: str, n_pub: int, n_req: int, n_js: int, stream: str) -> dict[str, float]:
    results: dict[str, float] = {}
    async with open_bus(url, name="bench") as bus, trio.open_nursery() as nursery:
        echo = await bus.subscribe("bench.echo2")
        flood = await bus.subscribe("bench.trio.flood", max_pending=n_pub + 1)

        async def serve_echo() -> None:
            async for msg in echo:
                bus.publish_nowait(msg.reply, b"ok")
        nursery.start_soon(serve_echo)
        log.bind_trace(TRACE)
        start = time.perf_counter()
        for _ in range(n_pub):
            await bus.publish("bench.trio.flood", PAYLOAD)
        got = 0
        while got < n_pub and time.perf_counter() - start < 60:  # noqa: ASYNC110
            got += _drain(flood.receive)
            if got < n_pub:
                await trio.sleep(0.001)
        results["core publish (msg/s)"] = got / (time.perf_counter() - start)
        await bus.request("bench.echo2", b"x", timeout=5)
        start = time.perf_counter()
        for _ in range(n_req):
            await bus.request("bench.echo2", b"x", timeout=5)
        results["request RTT (µs)"] = (time.perf_counter() - start) / n_req * 1e6
        start = time.perf_counter()
        for i in range(n_js):
            await js_publish(bus, f"{stream}.trio", PAYLOAD, msg_id=f"trio-s-{i}")
        results["JetStream publish, sequential (msg/s)"] = n_js / (time.perf_counter() - start)
        start = time.perf_counter()
        limiter = trio.Semaphore(256)

        async def one(i: int) -> None:
            async with limiter:
                await js_publish(bus, f"{stream}.trio", PAYLOAD, msg_id=f"trio-c-{i}")
        async with trio.open_nursery() as publishers:
            for i in range(n_js * 4):
                publishers.start_soon(one, i)
        results["JetStream publish, 256 in flight (msg/s)"] = n_js * 4 / (time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return results


def _drain(receive: trio.MemoryReceiveChannel) -> int:  # type: ignore[type-arg]
    count = 0
    while True:
        try:
            receive.receive_nowait()
        except trio.WouldBlock:
            return count
        count += 1


async def _make_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
    await nc.close()


def run(quick: bool) -> tuple[dict[str, float], dict[str, float]]:
    n_pub, n_req, n_js = (20_000, 1_000, 300) if quick else (200_000, 5_000, 2_000)
    store = Path(tempfile.mkdtemp(prefix="nj-bench-"))
    server = start_nats(store)
    try:
        asyncio.run(_make_stream(server.url, "BENCH"))
        raw = asyncio.run(raw_side(server.url, n_pub, n_req, n_js, "BENCH"))
        ours = trio.run(trio_side, server.url, n_pub, n_req, n_js, "BENCH")
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
    return raw, ours


def table(raw: dict[str, float], ours: dict[str, float]) -> str:
    lines = ["| measure | raw nats-py (asyncio) | natterjack trio bus | trio / raw |", "|---|---:|---:|---:|"]
    for name in raw:
        lines.append(f"| {name} | {raw[name]:,.0f} | {ours[name]:,.0f} | {ours[name] / raw[name]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument("--write", metavar="FILE", help="replace the bus section of this Markdown file")
    args = parser.parse_args()
    raw, ours = run(args.quick)
    text = table(raw, ours)
    print(text)
    if args.write:
        command = f"make bench-bus (python -m bench.bus{' --quick' if args.quick else ''} --write {args.write})"
        report.write_section(Path(args.write), "bus", command, text)


if __name__ == "__main__":
    main()
