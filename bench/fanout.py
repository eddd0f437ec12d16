"""Group fan-out: one message to a group whose members are all online.

    python -m bench.fanout [--members N] [--messages M] [--write BENCHMARKS.md]

Starts the five services (their own nats-server, database and Redis prefix), registers
N users, opens N WebSockets to one gateway, creates one group with all of them, then
sends M messages one after another (each after the previous one fully arrived) and
records, per message, the time from send until the last member received it. A second
phase sends M messages back to back to measure deliveries per second through the
gateway process. The relay baseline for ratios is measured by the load tool (make bench).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tools.stack import isolated_stack

from . import report
from .handshake import users_with_ids


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(api: str, ws_url: str, members: int, messages: int) -> dict[str, float]:
    people = await users_with_ids(api, members)
    sender_token, sender_id = people[0]
    async with httpx.AsyncClient(base_url=api, timeout=60) as http:
        chat = (await http.post("/api/v1/chats", headers={"Authorization": f"Bearer {sender_token}"},
                                json={"type": "group", "name": "bench",
                                      "members": [uid for _, uid in people[1:]]})).json()["chat_id"]
    arrivals: dict[int, list[float]] = {}
    all_in: dict[int, trio.Event] = {}
    connected = trio.Event()
    ready = 0

    closed: list[int] = []

    async def member(token: str, task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001
        nonlocal ready
        async with open_websocket_url(f"{ws_url}?token={token}") as ws:
            ready += 1
            if ready == members - 1:
                connected.set()
            while True:
                try:
                    text = await ws.get_message()
                except ConnectionClosed as exc:
                    closed.append(exc.reason.code if exc.reason else 1006)
                    return
                frame = orjson.loads(text)
                if frame.get("type") == "new_message" and frame["chat_id"] == chat:
                    seq = frame["seq"]
                    arrivals.setdefault(seq, []).append(time.perf_counter())
                    if len(arrivals[seq]) == members - 1 and seq in all_in:
                        all_in[seq].set()

    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        for token, _ in people[1:]:
            nursery.start_soon(member, token)
        await connected.wait()
        await trio.sleep(1)  # catch-up of the created event finished everywhere
        async with open_websocket_url(f"{ws_url}?token={sender_token}") as ws:
            for i in range(messages):
                started = time.perf_counter()
                await ws.send_message(orjson.dumps({"type": "send_message", "id": f"m{i}",
                                                    "chat_id": chat, "content": f"hello {i}"}).decode())
                while (frame := orjson.loads(await ws.get_message()))["type"] != "message_ack":
                    pass
                done = all_in[frame["seq"]] = trio.Event()
                if len(arrivals.get(frame["seq"], [])) == members - 1:
                    done.set()
                with trio.fail_after(30):
                    await done.wait()
                latencies.append(max(arrivals[frame["seq"]]) - started)
            print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, 99) * 1000:.1f} ms", flush=True)
            burst_start = time.perf_counter()
            seqs: list[int] = []
            for i in range(messages):
                await ws.send_message(orjson.dumps({"type": "send_message", "id": f"b{i}",
                                                    "chat_id": chat, "content": f"burst {i}"}).decode())
            refused = 0
            while len(seqs) + refused < messages:
                frame = orjson.loads(await ws.get_message())
                if frame["type"] == "error":
                    refused += 1  # e.g. 5003 under overload: counted, not waited for
                    print(f"send refused: {frame}", flush=True)
                elif frame["type"] == "message_ack":
                    seqs.append(frame["seq"])
                    all_in[frame["seq"]] = trio.Event()
                    if len(arrivals.get(frame["seq"], [])) == members - 1:
                        all_in[frame["seq"]].set()
            with trio.move_on_after(120):
                for seq in seqs:
                    await all_in[seq].wait()
            burst = time.perf_counter() - burst_start
            delivered = sum(len(arrivals.get(seq, [])) for seq in seqs)
            print(f"burst: {delivered} of {len(seqs) * (members - 1)} delivered in {burst:.1f} s, "
                  f"sockets closed: {len(closed)} {sorted(set(closed))}", flush=True)
        nursery.cancel_scope.cancel()
    return {"p50": statistics.median(latencies) * 1000, "p99": percentile(latencies, 99) * 1000,
            "max": max(latencies) * 1000, "rate": delivered / burst,
            "complete": delivered == len(seqs) * (members - 1), "closed": len(closed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    with isolated_stack({"NJ_ARGON2_TIME_COST": "1", "NJ_ARGON2_MEMORY_KIB": "8"}) as stack:
        result = trio.run(run, stack.api, stack.ws_url, args.members, args.messages)
    body = report.table(["measure", "value", "goal"], [
        ["time to last delivery, p50 (ms)", f"{result['p50']:.1f}", ""],
        ["time to last delivery, p99 (ms)", f"{result['p99']:.1f}", "< 200"],
        ["time to last delivery, max (ms)", f"{result['max']:.1f}", ""],
        ["deliveries/s through one gateway (burst)", f"{result['rate']:,.0f}", "≥ 25,000"]])
    body += (f"\n\n{args.members} members online on one gateway, {args.messages} messages "
             "sent one at a time (latency), then back to back (throughput); clients in one "
             "process on the same 2-core machine.")
    print(body)
    if args.write:
        report.write_section(Path(args.write), "fanout", f"python -m bench.fanout --members "
                             f"{args.members} --messages {args.messages} --write {args.write}", body)


if __name__ == "__main__":
    main()
