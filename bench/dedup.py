"""The hot-path cost of durable send de-duplication (MySQL claims behind the Redis ones).

    python -m bench.dedup [--sends N] [--concurrency C] [--rounds R] [--write BENCHMARKS.md]

Starts the five services (own nats-server, database and Redis prefix), then restarts the
router with ``NJ_ROUTER_DEDUP_DURABLE`` off and on, alternately, ``R`` times each. In each
phase it sends N messages straight to ``im.router.send`` (the router's handler path, no
gateway), C at a time, each with a fresh client id, and records the wall time, the router
process's CPU seconds (utime + stime from /proc) and, for 200 sends one at a time, the
median answer time. Ratios are durable / Redis-only, from the same run.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import trio

from libs import rpc
from libs.bus import Bus, open_bus
from tools.stack import Stack, isolated_stack

from . import report
from .delivery_load import cpu_seconds
from .handshake import users_with_ids

SEQUENTIAL = 200


async def _send(bus: Bus, sender: str, chat_id: str) -> None:
    await rpc.call(bus, "im.router.send", {
        "sender_id": sender, "sender_device_id": "bench", "client_msg_id": secrets.token_hex(8),
        "chat_id": chat_id, "content": "hello"}, timeout=30)


async def _burst(bus: Bus, sender: str, chat_id: str, sends: int, concurrency: int) -> None:
    left = iter(range(sends))

    async def worker() -> None:
        for _ in left:
            await _send(bus, sender, chat_id)
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)


async def _phase(stack: Stack, bus: Bus, sender: str, chat_id: str, durable: bool, sends: int,
                 concurrency: int) -> dict[str, float]:
    stack.stop("router")
    stack.start("router", env={"NJ_ROUTER_DEDUP_DURABLE": "1" if durable else "0"})
    await trio.to_thread.run_sync(stack.wait_ready, "router")
    await _burst(bus, sender, chat_id, 200, concurrency)  # warm: caches, seq block, pools
    pid = stack.processes["router"].pid
    cpu, started = cpu_seconds(pid), time.perf_counter()
    await _burst(bus, sender, chat_id, sends, concurrency)
    wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    batch = _mean_batch(stack, "router.claims")
    one_by_one = []
    for _ in range(SEQUENTIAL):
        began = time.perf_counter()
        await _send(bus, sender, chat_id)
        one_by_one.append(time.perf_counter() - began)
    return {"rate": sends / wall, "cpu_ms": 1000 * cpu / sends,
            "p50_ms": 1000 * statistics.median(one_by_one), "claims_per_batch": batch}


def _mean_batch(stack: Stack, writer: str) -> float:
    """Mean claims per transaction since the router started (0 without durable claims)."""
    url = f"http://127.0.0.1:{stack.ports['router']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    found = {kind: float(value) for kind, value in re.findall(
        rf'^nj_groupcommit_batch_size_(sum|count){{writer="{re.escape(writer)}"}}\s+(\S+)$', text, re.M)}
    return found.get("sum", 0.0) / found["count"] if found.get("count") else 0.0


async def run(stack: Stack, sends: int, concurrency: int, rounds: int) -> dict[bool, list[dict[str, float]]]:
    people = await users_with_ids(stack.api, 2)
    (token, sender), (_, other) = people
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as http:
        chat_id = (await http.post("/api/v1/chats", headers={"Authorization": f"Bearer {token}"},
                                   json={"type": "group", "name": "bench", "members": [other]})
                   ).json()["chat_id"]
    found: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    async with open_bus(stack.env["NJ_NATS_URL"], name="bench-dedup") as bus:
        for _ in range(rounds):
            for durable in (False, True):
                found[durable].append(await _phase(stack, bus, sender, chat_id, durable, sends,
                                                   concurrency))
    return found


def render(found: dict[bool, list[dict[str, float]]], sends: int, concurrency: int) -> str:
    def mean(durable: bool, key: str) -> float:
        return statistics.fmean(p[key] for p in found[durable])
    rows: list[list[Any]] = []
    for key, label in (("rate", f"sends/s ({sends} sends, {concurrency} at a time)"),
                       ("cpu_ms", "router CPU ms per send"),
                       ("p50_ms", f"answer p50, one at a time ({SEQUENTIAL} sends), ms")):
        off, on = mean(False, key), mean(True, key)
        rows.append([label, f"{off:.2f}", f"{on:.2f}", f"{on / off:.2f}"])
    return report.table(["figure", "Redis-only dedup", "durable (MySQL + Redis)", "ratio"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with isolated_stack() as stack:
        found = trio.run(run, stack, args.sends, args.concurrency, args.rounds)
    body = render(found, args.sends, args.concurrency)
    print(body)
    for durable, phases in found.items():
        print("durable" if durable else "redis-only", [{k: round(v, 2) for k, v in p.items()} for p in phases])
    print("claims per transaction (durable phases, warm-up and timed burst):",
          [round(p["claims_per_batch"], 2) for p in found[True]])
    if args.write:
        report.write_section(args.write, "Durable send de-duplication: hot-path cost",
                             "python -m bench.dedup", body)


if __name__ == "__main__":
    main()
