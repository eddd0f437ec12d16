"""Delivery: an offline device's backlog drain, and what redelivery of unacked events costs.

    python -m bench.delivery [--rounds N] [--backlog N] [--rates R,R] [--seconds S] [--repeat N]
                             [--write FILE]

(1) Backlog drain. Per round a fresh pair of users: A sends N messages (default 1,000)
into the direct chat while B has never connected, waits for every message_ack, then
until history serves the last one and delivery-retry knows it (its status API lists B's
device as pending). Then B connects; the figure is the time from the completed WebSocket
handshake until B holds all N events (dense in seq, in order, duplicates counted) and
has sent its final cumulative ack (B also acks every 100 events on the way). Baseline,
same round: B pages the chat from the start over REST (limit 100, the page size of the
gateway's catch-up), i.e. the same events read from the same store without the socket,
the catch-up plan, per-socket ordering and acks.

(2) Redelivery overhead (:mod:`bench.delivery_load`): a steady message rate from several
senders to several online recipients, with every ack sent and with 10 % of acks left
out, each run on a fresh stack with a short redelivery backoff, --repeat runs of each
kind per target rate of --rates (1,000 msg/s as asked of the stack, and 300, which this 2-core
machine sustains, so that latencies measure delivery rather than queueing).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tools.stack import isolated_stack

from . import delivery_load, report
from .handshake import users_with_ids

CHEAP_ARGON2 = delivery_load.CHEAP_ARGON2
EVENT_FRAMES = {"new_message", "message_updated", "chat_updated", "void"}
SENDS_IN_FLIGHT = 32  # the gateway's default per-connection limit
ACK_EVERY = 100


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


async def direct_chat(http: httpx.AsyncClient, token: str, other: str) -> str:
    answer = await http.post("/api/v1/chats", headers={"Authorization": f"Bearer {token}"},
                             json={"type": "direct", "members": [other]})
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["chat_id"])


async def send_all(ws: WebSocketConnection, chat: str, n: int) -> list[dict[str, Any]]:
    """Send ``n`` messages, SENDS_IN_FLIGHT unanswered at most; returns their message_acks."""
    acks: list[dict[str, Any]] = []
    window = trio.Semaphore(SENDS_IN_FLIGHT)

    async def sender() -> None:
        for i in range(n):
            await window.acquire()
            await ws.send_message(frame(type="send_message", id=f"m{i}", chat_id=chat,
                                        content=f"backlog {i}"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        while len(acks) < n:
            got = orjson.loads(await ws.get_message())
            if got["type"] == "error":
                raise RuntimeError(f"send refused: {got}")
            if got["type"] == "message_ack":
                acks.append(got)
                window.release()
    return sorted(acks, key=lambda ack: ack["seq"])


async def wait_stored(http: httpx.AsyncClient, sender_token: str, chat: str,
                      last: dict[str, Any], recipient: str, timeout: float = 60) -> None:
    """Until history pages the last message and delivery-retry lists it pending for B."""
    auth = {"Authorization": f"Bearer {sender_token}"}
    with trio.fail_after(timeout):
        while True:
            page = (await http.get(f"/api/v1/chats/{chat}/messages", params={"limit": 1},
                                   headers=auth)).json()
            status = await http.get(f"/api/v1/messages/{last['message_id']}/status", headers=auth)
            pending = status.status_code == 200 and any(
                r["user_id"] == recipient and r["status"] == "pending"
                for r in status.json()["recipients"])
            if page["events"] and page["events"][-1]["seq"] >= last["seq"] and pending:
                return
            await trio.sleep(0.05)


async def drain(ws_url: str, token: str, chat: str, wanted: set[int]) -> tuple[float, list[int]]:
    """Connect, read until every wanted seq is held, send the final ack: (seconds, seqs read)."""
    read: list[int] = []
    held: set[int] = set()
    async with open_websocket_url(f"{ws_url}?token={token}") as ws:
        started = time.perf_counter()
        while not wanted <= held:
            got = orjson.loads(await ws.get_message())
            if got["type"] in EVENT_FRAMES and got["chat_id"] == chat:
                read.append(got["seq"])
                held.add(got["seq"])
                if len(read) % ACK_EVERY == 0:
                    await ws.send_message(frame(type="ack", chat_id=chat, seq=got["seq"]))
        await ws.send_message(frame(type="ack", chat_id=chat, seq=max(held)))
        elapsed = time.perf_counter() - started
    return elapsed, read


async def page_through(http: httpx.AsyncClient, token: str, chat: str) -> tuple[float, int]:
    """Read the whole chat over REST from the start, 100 a page: (seconds, events)."""
    auth = {"Authorization": f"Bearer {token}"}
    after, count = 0, 0
    started = time.perf_counter()
    while True:
        page = (await http.get(f"/api/v1/chats/{chat}/messages", headers=auth,
                               params={"after_seq": after, "limit": 100})).json()
        count += len(page["events"])
        if not page["events"] or not page["has_more"]:
            return time.perf_counter() - started, count
        after = page["events"][-1]["seq"]


def check_order(read: list[int]) -> dict[str, int]:
    """Duplicates, and whether the distinct seqs came in ascending order without holes."""
    distinct = list(dict.fromkeys(read))
    dense = distinct == list(range(distinct[0], distinct[0] + len(distinct)))
    return {"duplicates": len(read) - len(distinct), "in_order": int(dense)}


async def backlog_round(api: str, ws_url: str, n: int) -> dict[str, Any]:
    (a_token, _), (b_token, b_id) = await users_with_ids(api, 2)
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        chat = await direct_chat(http, a_token, b_id)
        async with open_websocket_url(f"{ws_url}?token={a_token}") as ws:
            acks = await send_all(ws, chat, n)
        await wait_stored(http, a_token, chat, acks[-1], b_id)
        elapsed, read = await drain(ws_url, b_token, chat, {ack["seq"] for ack in acks})
        paged, events = await page_through(http, b_token, chat)
    result = {"drain": elapsed, "page": paged, "events": events, **check_order(read)}
    print(f"backlog round: drain {elapsed * 1000:.0f} ms, REST page-through {paged * 1000:.0f} ms, "
          f"{len(read)} frames, {result}", flush=True)
    return result


async def backlog(api: str, ws_url: str, rounds: int, n: int) -> list[dict[str, Any]]:
    return [await backlog_round(api, ws_url, n) for _ in range(rounds)]


def backlog_table(results: list[dict[str, Any]], n: int) -> str:
    drains = [r["drain"] * 1000 for r in results]
    pages = [r["page"] * 1000 for r in results]
    clean = all(r["duplicates"] == 0 and r["in_order"] for r in results)
    return report.table(["measure", "p50 (ms)", "max (ms)", "goal"], [
        [f"drain: handshake → all {n:,} held + final ack", f"{statistics.median(drains):.0f}",
         f"{max(drains):.0f}", "< 1000 " + ("✓" if max(drains) < 1000 else "✗")],
        ["baseline: REST page-through of the same chat (limit 100)",
         f"{statistics.median(pages):.0f}", f"{max(pages):.0f}", ""],
        ["drain / page-through (p50)", f"{statistics.median(drains) / statistics.median(pages):.1f}",
         "", ""],
        [f"in order, dense, no duplicates ({len(results)} rounds)", "yes" if clean else "NO", "", ""]])


HOW = """How it is measured: each part starts the five services as processes with their own
nats-server (JetStream, fsync always), a throwaway database and Redis prefix, everything on
loopback. Backlog: per round a fresh pair; B has never connected while A sends; B's timer
starts when its WebSocket handshake completes and stops after its final cumulative ack is
written (B acks every 100 events on the way). The baseline pages the same chat over REST
(limit 100, the page size of the gateway's catch-up): the same events from the same store
without the socket, the catch-up plan, per-socket ordering and acks. Redelivery: senders
and recipients run in two client processes of their own; a message's content carries its
send time, a recipient records each event's first arrival. "10 % acks dropped": acks are
cumulative, so one lost ack is made good by the next; what costs redelivery is a chat
left unacked, so a recipient goes silent on a chat at the end of a burst (that ack and
every later one of the chat left out) until delivery-retry resends an event it already
holds, starting silences while fewer than 10 % of its acks were left out. CPU seconds
are utime + stime from /proc/<pid>/stat of each service process over the measured window
(first send until every chat is held, acked and 1 s more)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--rates", default="1000,300", help="msg/s targets, one pair of runs each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each kind per rate")
    parser.add_argument("--skip", choices=["backlog", "redelivery"])
    parser.add_argument("--write", metavar="FILE")
    args = parser.parse_args()
    body = ""
    if args.skip != "backlog":
        with isolated_stack(CHEAP_ARGON2) as stack:
            rounds = trio.run(backlog, stack.api, stack.ws_url, args.rounds, args.backlog)
        body += backlog_table(rounds, args.backlog)
    if args.skip != "redelivery":
        for rate in (float(r) for r in args.rates.split(",")):
            runs = [delivery_load.measure(drop, rate, args.seconds)
                    for drop in delivery_load.alternating(args.repeat)]
            body += "\n\n" + delivery_load.tables(runs, rate, args.seconds)
    body += "\n\n" + HOW
    print(body)
    if args.write:
        command = (f"make bench-delivery (python -m bench.delivery --rounds {args.rounds} --backlog "
                   f"{args.backlog} --rates {args.rates} --seconds {args.seconds:g} --repeat {args.repeat} "
                   f"--write {args.write})")
        report.write_section(Path(args.write), "delivery", command, body.strip())


if __name__ == "__main__":
    main()
