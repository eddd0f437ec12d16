"""A client worker process of the load tool: one trio loop holding many WebSocket clients.

The parent starts workers with :func:`worker_main` (multiprocessing, spawn), sends orders
on the worker's own queue and reads answers as (tag, payload) on a shared inbox. A worker
holds pairs: the sender writes ``send_message`` frames into the pair's chat, the recipient
reads them. Content is the send time (``time.time_ns``), so latency is measured at first
arrival across processes. Every frame written and read is kept in a history checker
``Recorder`` (product only), whose snapshot goes back to the parent at the end.

Against the relay (``relay=True``) the chat is the recipient's name, nothing is acked and
nothing answers a send: the same clients, the least server.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url
from wsproto.utilities import LocalProtocolError

from bench.delivery_clients import own_cpu
from tests.checker import Device, Recorder

EVENT_FRAMES = {"new_message", "message_updated", "chat_updated", "void"}
IN_FLIGHT = 32  # the gateway's default NJ_GATEWAY_SENDS_IN_FLIGHT
DRAIN_S = 10.0  # after a step's sends, how long its deliveries may take before they count lost
CLOSE_WAIT_S = 10.0  # a leaving client waits this long for the close handshake


@dataclass(frozen=True)
class Peer:
    token: str
    device: Device
    ws_url: str


@dataclass(frozen=True)
class Pair:
    sender: Peer
    recipient: Peer
    chat_id: str


@dataclass
class Tally:
    """One step (or the reconnect round) of a worker: what was sent, held and how fast."""

    sent: dict[str, int] = field(default_factory=dict)  # frame id -> send time (ns)
    answered: set[str] = field(default_factory=set)  # acked or refused
    refused: set[str] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)  # refusals by error code
    arrived: set[str] = field(default_factory=set)  # frame ids held by their recipient
    latencies_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)  # reconnect: handshake -> first event
    last_arrival: float = 0.0
    cpu_at_start: float = field(default_factory=own_cpu)


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


class Worker:
    def __init__(self, pairs: list[Pair], relay: bool) -> None:
        self.pairs, self.relay = pairs, relay
        self.recorder = Recorder()
        self.tally = Tally()
        self.sockets: dict[Device, WebSocketConnection] = {}
        self.windows = {p.sender.device: trio.Semaphore(IN_FLIGHT) for p in pairs}
        self.top: dict[tuple[Device, str], int] = {}
        self.connected_at: dict[Device, float] = {}
        self.counter = 0

    # ---- reading -----------------------------------------------------------------------
    async def read(self, peer: Peer, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with open_websocket_url(f"{peer.ws_url}?token={peer.token}") as ws:
                self.sockets[peer.device] = ws
                self.connected_at[peer.device] = time.perf_counter()
                task_status.started()
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await self.take(peer.device, ws, orjson.loads(await ws.get_message()))
        except LocalProtocolError:
            # A gateway ping that crosses our close: trio-websocket answers it with a pong
            # wsproto refuses once closing, and raises that from its reader. The socket
            # is closed as intended (the reconnect round's leave, 5,000 closes at a time).
            return

    async def take(self, device: Device, ws: WebSocketConnection, got: dict[str, Any]) -> None:
        kind = got.get("type")
        if self.relay:
            self.arrival(device, got)
            return
        self.recorder.observe(device, got)
        if kind in ("message_ack", "error") and got.get("id") in self.tally.sent:
            self.tally.answered.add(got["id"])
            if kind == "error":
                self.refuse(got)
            self.windows[device].release()
        elif kind in EVENT_FRAMES:
            if kind == "new_message":
                self.arrival(device, got)
            await self.ack(device, ws, got["chat_id"], got["seq"])

    def refuse(self, got: dict[str, Any]) -> None:
        self.tally.refused.add(got["id"])
        code = str(got.get("code"))
        self.tally.codes[code] = self.tally.codes.get(code, 0) + 1

    def arrival(self, device: Device, got: dict[str, Any]) -> None:
        key = got.get("client_msg_id") or got.get("id")
        if key not in self.tally.sent or key in self.tally.arrived:
            return  # a resend of an event already held, or one from an earlier step
        now = time.perf_counter()
        self.tally.arrived.add(key)
        self.tally.latencies_ms.append((time.time_ns() - int(got["content"])) / 1e6)
        if device in self.connected_at:  # reconnect round: first event since the handshake
            self.tally.first_ms.append((now - self.connected_at.pop(device)) * 1000)
        self.tally.last_arrival = now

    async def ack(self, device: Device, ws: WebSocketConnection, chat: str, seq: int) -> None:
        """Cumulative: only the next seq after the last acked one (or the first one seen);
        past a hole nothing is acked until a resend fills it."""
        top = self.top.get((device, chat), 0)
        if seq == top + 1 or (top == 0 and seq > 0):
            self.top[(device, chat)] = seq
            with contextlib.suppress(ConnectionClosed):
                await ws.send_message(frame(type="ack", chat_id=chat, seq=seq))

    # ---- sending -----------------------------------------------------------------------
    async def send(self, pair: Pair) -> None:
        device = pair.sender.device
        if not self.relay:
            await self.windows[device].acquire()
        self.counter += 1
        fid = f"{device.device_id[:8]}.{self.counter}"
        text = {"type": "send_message", "id": fid, "chat_id": pair.chat_id,
                "content": str(time.time_ns())}
        self.tally.sent[fid] = time.time_ns()
        if not self.relay:
            self.recorder.sent(device, text)
        await self.sockets[device].send_message(orjson.dumps(text).decode())

    async def paced(self, pair: Pair, start: float, interval: float, count: int) -> None:
        for k in range(count):
            await trio.sleep_until(start + k * interval)
            await self.send(pair)

    async def step(self, rate: float, seconds: float) -> dict[str, Any]:
        """Every pair sends at rate / pairs for ``seconds``; then up to DRAIN_S for arrivals."""
        self.tally = Tally()
        interval = len(self.pairs) / rate
        count = max(1, int(seconds / interval))
        started, now = time.perf_counter(), trio.current_time()
        async with trio.open_nursery() as nursery:
            for i, pair in enumerate(self.pairs):
                nursery.start_soon(self.paced, pair, now + i * interval / len(self.pairs),
                                   interval, count)
        await self.drain()
        return self.summary(started)

    async def drain(self) -> None:
        with trio.move_on_after(DRAIN_S):
            while not self.settled():  # noqa: ASYNC110 - polled
                await trio.sleep(0.02)

    def settled(self) -> bool:
        """Every send answered (product) and every one that must arrive arrived."""
        answered = self.relay or len(self.tally.answered) >= len(self.tally.sent)
        return answered and len(self.tally.arrived) >= len(self.expected())

    def expected(self) -> set[str]:
        """Sends that must arrive: all of them on the relay, the acked ones on the product."""
        if self.relay:
            return set(self.tally.sent)
        return self.tally.answered - self.tally.refused

    def summary(self, started: float) -> dict[str, Any]:
        tally = self.tally
        missing = len(self.expected() - tally.arrived)
        unanswered = 0 if self.relay else len(tally.sent) - len(tally.answered)
        return {"sent": len(tally.sent), "answered": len(tally.answered), "refused": len(tally.refused),
                "codes": tally.codes,
                "unanswered": unanswered,
                "arrived": len(tally.arrived), "missing": missing,
                "latencies_ms": tally.latencies_ms, "first_ms": tally.first_ms,
                "window_s": max(tally.last_arrival - started, 1e-9),
                "client_cpu_s": own_cpu() - tally.cpu_at_start}

    # ---- reconnect round ---------------------------------------------------------------
    async def one_each(self) -> dict[str, Any]:
        """One message into every pair's chat while its recipient is away; until acked."""
        self.tally = Tally()
        started = time.perf_counter()
        for pair in self.pairs:
            await self.send(pair)
        with trio.move_on_after(DRAIN_S * 3):
            while len(self.tally.answered) < len(self.tally.sent):  # noqa: ASYNC110
                await trio.sleep(0.02)
        return self.summary(started)


async def order(orders: Any) -> Any:
    return await trio.to_thread.run_sync(orders.get, abandon_on_cancel=True)


async def connect_all(nursery: trio.Nursery, worker: Worker, peers: list[Peer]) -> None:
    limiter = trio.Semaphore(50)

    async def one(peer: Peer) -> None:
        async with limiter:
            await nursery.start(worker.read, peer)
    async with trio.open_nursery() as opening:
        for peer in peers:
            opening.start_soon(one, peer)


async def reconnect(nursery: trio.Nursery, worker: Worker, spread_s: float) -> dict[str, Any]:
    """Recipients come back at even offsets within ``spread_s``; until every one is held."""
    started = time.perf_counter()
    async with trio.open_nursery() as coming:
        for i, pair in enumerate(worker.pairs):
            at = trio.current_time() + spread_s * i / len(worker.pairs)
            coming.start_soon(come_back, nursery, worker, pair.recipient, at)
    await worker.drain()
    return worker.summary(started)


async def come_back(nursery: trio.Nursery, worker: Worker, peer: Peer, at: float) -> None:
    await trio.sleep_until(at)
    await nursery.start(worker.read, peer)


async def leave(worker: Worker) -> None:
    """Every recipient closes, 50 at once (each close waits for the server's answer, at
    most CLOSE_WAIT_S; the socket is dropped either way)."""
    limiter = trio.Semaphore(50)

    async def close(device: Device) -> None:
        async with limiter:
            # Bounded: trio-websocket waits for the close handshake without a limit, and
            # a reader that died on a crossing ping (see Worker.read) never completes it.
            with trio.move_on_after(CLOSE_WAIT_S):
                await worker.sockets.pop(device).aclose()
        worker.connected_at.pop(device, None)
    async with trio.open_nursery() as nursery:
        for pair in worker.pairs:
            nursery.start_soon(close, pair.recipient.device)


async def serve_orders(pairs: list[Pair], relay: bool, orders: Any, inbox: Any) -> None:
    worker = Worker(pairs, relay)
    async with trio.open_nursery() as nursery:
        await connect_all(nursery, worker, [p.recipient for p in pairs] +
                          [p.sender for p in pairs])
        await trio.sleep(1.0)  # the chats' created events arrive and are acked
        worker.connected_at.clear()
        inbox.put(("ready", None))
        while (command := await order(orders))[0] != "finish":
            inbox.put(await run_command(nursery, worker, command))
        inbox.put(("finish", None if relay else worker.recorder.snapshot()))
        nursery.cancel_scope.cancel()


async def run_command(nursery: trio.Nursery, worker: Worker, command: tuple[Any, ...]) -> Any:
    name, *args = command
    if name == "step":
        return name, await worker.step(*args)
    if name == "leave":
        await leave(worker)
        return name, None
    if name == "one_each":
        return name, await worker.one_each()
    if name == "reconnect":
        return name, await reconnect(nursery, worker, *args)
    raise ValueError(f"unknown order {name!r}")


def worker_main(pairs: list[Pair], relay: bool, orders: Any, inbox: Any) -> None:
    trio.run(serve_orders, pairs, relay, orders, inbox)
