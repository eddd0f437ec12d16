"""The client processes of the redelivery benchmark (:mod:`bench.delivery_load`).

Senders and recipients each run in a process of their own (multiprocessing, spawn), take
orders from a queue and report on a shared one as (tag, payload). Sent messages carry
their send time (``time.time_ns``) and their place in the burst in the content, so a
recipient can measure the latency of an event's first arrival and see a burst's end.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

EVENT_FRAMES = {"new_message", "message_updated", "chat_updated", "void"}
OUTSTANDING = 256  # unanswered sends per sender at most
SETTLE_S = 1.0  # recipients stay connected this long after holding and acking everything


@dataclass
class Plan:
    ws_url: str
    senders: list[tuple[str, list[str]]]  # (access token, chat ids)
    recipients: list[tuple[str, list[str]]]
    rate: float  # messages per second, all senders together
    seconds: float
    burst: int
    drop: float  # share of all acks never sent


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def order(orders: Any) -> Any:
    return await trio.to_thread.run_sync(orders.get, abandon_on_cancel=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# ---- senders ---------------------------------------------------------------------------
@dataclass
class Sent:
    sent: int = 0
    acked: int = 0
    errors: int = 0
    delivery_failed: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)  # frame id -> send time
    ack_ms: list[float] = field(default_factory=list)


async def read_answers(ws: WebSocketConnection, window: trio.Semaphore, tally: Sent) -> None:
    while True:
        got = orjson.loads(await ws.get_message())
        if got["type"] == "message_ack":
            tally.acked += 1
            tally.ack_ms.append((time.perf_counter() - tally.sent_at.pop(got["id"])) * 1000)
            tally.last_seq[got["chat_id"]] = max(got["seq"], tally.last_seq.get(got["chat_id"], 0))
            window.release()
        elif got["type"] == "error" and "id" in got:
            tally.errors += 1
            window.release()
        elif got["type"] == "delivery_failed":
            tally.delivery_failed += 1
        elif got["type"] in ("sync_done", *EVENT_FRAMES):  # the chat's created event
            seq = got["last_seq"] if got["type"] == "sync_done" else got["seq"]
            await ws.send_message(frame(type="ack", chat_id=got["chat_id"], seq=seq))


async def send_bursts(ws: WebSocketConnection, chats: list[str], plan: Plan, start: float,
                      window: trio.Semaphore, tally: Sent) -> None:
    """Bursts to the chats in turn, paced so that all senders together make plan.rate."""
    interval = plan.burst * len(plan.senders) / plan.rate
    bursts = int(plan.seconds / interval)
    for j in range(bursts):
        await trio.sleep_until(start + j * interval)
        chat = chats[j % len(chats)]
        for k in range(1, plan.burst + 1):
            await window.acquire()
            tally.sent_at[f"{j}.{k}"] = time.perf_counter()
            await ws.send_message(frame(type="send_message", id=f"{j}.{k}", chat_id=chat,
                                        content=f"{time.time_ns()} {k}/{plan.burst}"))
            tally.sent += 1


async def one_sender(plan: Plan, index: int, go: trio.Event, connected: trio.Semaphore,
                     tally: Sent) -> None:
    token, chats = plan.senders[index]
    window = trio.Semaphore(OUTSTANDING)
    async with open_websocket_url(f"{plan.ws_url}?token={token}") as ws, trio.open_nursery() as nursery:
        nursery.start_soon(read_answers, ws, window, tally)
        connected.release()
        await go.wait()
        offset = index * plan.burst / plan.rate  # senders take turns within an interval
        await send_bursts(ws, chats, plan, trio.current_time() + offset, window, tally)
        with trio.move_on_after(60):
            while tally.acked + tally.errors < tally.sent:  # noqa: ASYNC110 - polled, not signalled
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def run_senders(plan: Plan, orders: Any, inbox: Any) -> None:
    tallies = [Sent() for _ in plan.senders]
    go, connected = trio.Event(), trio.Semaphore(0)
    async with trio.open_nursery() as nursery:
        for i, tally in enumerate(tallies):
            nursery.start_soon(one_sender, plan, i, go, connected, tally)
        for _ in plan.senders:
            await connected.acquire()
        inbox.put(("senders ready", None))
        await order(orders)
        started, cpu_at_go = time.perf_counter(), own_cpu()
        go.set()
    last_seq = {chat: seq for t in tallies for chat, seq in t.last_seq.items()}
    ack_ms = [ms for t in tallies for ms in t.ack_ms]
    inbox.put(("sent", {"sent": sum(t.sent for t in tallies), "acked": sum(t.acked for t in tallies),
                        "errors": sum(t.errors for t in tallies), "last_seq": last_seq,
                        "delivery_failed": sum(t.delivery_failed for t in tallies),
                        "ack_p50_ms": statistics.median(ack_ms) if ack_ms else 0.0,
                        "elapsed": time.perf_counter() - started, "cpu": own_cpu() - cpu_at_go}))


def senders_main(plan: Plan, orders: Any, inbox: Any) -> None:
    trio.run(run_senders, plan, orders, inbox)


# ---- recipients ------------------------------------------------------------------------
@dataclass
class Received:
    drop: float  # share of event acks never sent
    max_silent: int  # chats silent at once at most (drop x chats): spreads the silences
    top: dict[str, int] = field(default_factory=dict)  # highest seq held without a hole
    acked: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    events: int = 0  # first arrivals of events from others, each owed an ack
    unsent: int = 0  # ... whose ack was left out
    resent: int = 0
    disorder: int = 0
    errors: int = 0
    synced: int = 0
    silent_since: dict[str, float] = field(default_factory=dict)  # chat -> silence began
    silences_ms: list[float] = field(default_factory=list)  # silence began -> resend arrived

    def take(self, got: dict[str, Any]) -> bool:
        """Record an event frame; whether to ack the chat now.

        Silence: when the share of acks left out is below ``drop`` (and fewer than
        ``max_silent`` chats are silent), the ack of a burst's last event is left out, and so
        is every later ack of that chat, until delivery-retry resends an event already held;
        then the chat is acked again."""
        chat, seq = got["chat_id"], got["seq"]
        top = self.top.get(chat, 0)
        if seq <= top:
            self.resent += 1
            if chat in self.silent_since:
                self.silences_ms.append((time.perf_counter() - self.silent_since.pop(chat)) * 1000)
            return chat not in self.silent_since
        if seq != top + 1:
            self.disorder += 1
        self.top[chat] = seq
        if got["type"] != "new_message":
            return True
        sent_ns, _, place = got["content"].partition(" ")
        self.latencies_ms.append((time.time_ns() - int(sent_ns)) / 1e6)
        self.events += 1
        k, _, n = place.partition("/")
        if k == n and self.unsent < self.drop * self.events and chat not in self.silent_since \
                and len(self.silent_since) < self.max_silent:
            self.silent_since[chat] = time.perf_counter()
        if chat in self.silent_since:
            self.unsent += 1
            return False
        return True


async def one_recipient(ws_url: str, token: str, tally: Received) -> None:
    async with open_websocket_url(f"{ws_url}?token={token}") as ws:
        while True:
            got = orjson.loads(await ws.get_message())
            if got["type"] == "sync_done":
                tally.synced += 1
            elif got["type"] == "error":
                tally.errors += 1
            if got["type"] not in EVENT_FRAMES or not tally.take(got):
                continue
            chat = got["chat_id"]
            await ws.send_message(frame(type="ack", chat_id=chat, seq=tally.top[chat]))
            tally.acked[chat] = tally.top[chat]


async def run_recipients(plan: Plan, orders: Any, inbox: Any) -> None:
    chats = sum(len(c) for _, c in plan.recipients)
    tally = Received(drop=plan.drop, max_silent=max(1, round(plan.drop * chats)))
    async with trio.open_nursery() as nursery:
        for token, _ in plan.recipients:
            nursery.start_soon(one_recipient, plan.ws_url, token, tally)
        with trio.fail_after(60):
            while tally.synced < chats or len(tally.acked) < chats:  # noqa: ASYNC110
                await trio.sleep(0.05)
        cpu_at_ready = own_cpu()  # the senders start right after this
        inbox.put(("recipients ready", None))
        last_seq: dict[str, int] = await order(orders)
        with trio.move_on_after(60):
            while any(tally.acked.get(c, 0) < s for c, s in last_seq.items()):  # noqa: ASYNC110
                await trio.sleep(0.01)
        behind = sum(1 for c, s in last_seq.items() if tally.acked.get(c, 0) < s)
        await trio.sleep(SETTLE_S)
        inbox.put(("received", report(tally, behind, own_cpu() - cpu_at_ready)))
        await order(orders)
        nursery.cancel_scope.cancel()


def report(tally: Received, behind: int, cpu: float) -> dict[str, Any]:
    lat, quiet = tally.latencies_ms, tally.silences_ms
    return {"p50_ms": statistics.median(lat or [0.0]),
            "p99_ms": percentile(lat, 99), "events": tally.events, "unsent": tally.unsent,
            "silences": len(quiet), "silence_p50_ms": statistics.median(quiet or [0.0]),
            "silence_max_ms": max(quiet, default=0.0), "resent": tally.resent,
            "disorder": tally.disorder, "errors": tally.errors, "chats_behind": behind,
            "cpu": cpu}


def recipients_main(plan: Plan, orders: Any, inbox: Any) -> None:
    trio.run(run_recipients, plan, orders, inbox)
