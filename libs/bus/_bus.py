"""The trio <-> nats-py bridge.

nats-py is asyncio-only. Calling into asyncio from trio costs ~230 µs per call, so this
module crosses the boundary in bulk instead:

* outbound: trio code appends to a deque (``publish_nowait``); one long-lived asyncio task
  drains it into nats-py, which coalesces the writes. Requests, replies, acks and
  JetStream publishes all ride this one path.
* inbound: nats-py subscription callbacks (asyncio) hand messages to trio memory channels
  with ``send_nowait``; replies to our requests resolve waiters through one wildcard
  inbox subscription.

Both loops run in one thread under trio-asyncio, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import trio
import trio_asyncio

from .. import log, metrics
from ..errors import Unavailable
from ._message import Message

logger = log.get("bus")

Outgoing = tuple[str, bytes, str, "dict[str, str] | None"]
CONTENT_TYPE, JSON = "Content-Type", "application/json"


class BusTimeout(Unavailable):
    """Raised when a request gets no reply within its timeout."""


class NoResponders(Unavailable):
    """Raised when nobody subscribes to the subject of a request (the service is down)."""


class Subscription:
    """A subject's messages as a trio receive channel; ``close()`` unsubscribes."""

    def __init__(self, bus: Bus, receive: trio.MemoryReceiveChannel[Message]):
        self._bus = bus
        self.receive = receive
        self.dropped = 0
        self._nats_sub: Any = None

    def __aiter__(self) -> Any:
        return self.receive.__aiter__()

    async def close(self) -> None:
        if self._nats_sub is not None:
            sub, self._nats_sub = self._nats_sub, None
            with trio.move_on_after(2):
                await self._bus.call_aio(sub.unsubscribe)


class _Waiter:
    __slots__ = ("event", "msg")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.msg: Message | None = None


class Bus:
    """One NATS connection shared by a process; every method is called from trio."""

    def __init__(self, nc: Any, loop: Any, *, max_outbox: int = 50_000):
        self.nc = nc
        # Kept so tasks outside the loop's context (e.g. a test's) can call call_aio.
        self.loop = loop
        self.max_outbox = max_outbox
        self._outbox: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._drained = trio.Event()
        self._waiters: dict[str, _Waiter] = {}
        self._tokens = itertools.count(1)
        self._inbox = ""
        self.published = 0
        self.requests = self.request_timeouts = self.no_responders = self.dropped = 0
        metrics.track_bus(self)

    # ---- outbound ---------------------------------------------------------------------
    def publish_nowait(self, subject: str, data: bytes, *, reply: str = "",
                       headers: dict[str, str] | None = None) -> None:
        """Queue a core publish; never blocks (use :meth:`publish` for backpressure).

        Adds the current trace id and, to JSON objects, ``Content-Type: application/json``
        unless ``headers`` has them (JetStream acks such as ``+ACK`` are not JSON).
        """
        self._outbox.append((subject, data, reply, _with_defaults(headers, data)))
        if not self._wake.is_set():
            self._wake.set()

    async def publish(self, subject: str, data: bytes, *, reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        """Queue a core publish, waiting while the outbox is full (NATS away)."""
        while len(self._outbox) >= self.max_outbox:
            await self._drained.wait()
        self.publish_nowait(subject, data, reply=reply, headers=headers)
        # No full yield per message: the pump runs when this task next blocks, and then
        # carries everything queued so far in one batch.
        await trio.lowlevel.checkpoint_if_cancelled()

    async def _pump(self) -> None:
        """asyncio task: drain the outbox into nats-py, batch after batch."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                subject, data, reply, headers = self._outbox[0]
                try:
                    await self.nc.publish(subject, data, reply=reply, headers=headers)
                except (nats.errors.OutboundBufferLimitError, nats.errors.ConnectionReconnectingError):
                    await asyncio.sleep(0.05)  # reconnecting: keep the message, try again
                    continue
                except (nats.errors.BadSubjectError, nats.errors.MaxPayloadError,
                        nats.errors.BadHeaderError) as exc:
                    logger.warning("bus.publish_rejected", subject=subject, error=repr(exc))
                except nats.errors.ConnectionClosedError:
                    return
                self._outbox.popleft()
                self.published += 1
                if len(self._outbox) % 256 == 0:
                    self._signal_drained()
            self._signal_drained()

    def _signal_drained(self) -> None:
        drained, self._drained = self._drained, trio.Event()
        drained.set()

    # ---- request / reply --------------------------------------------------------------
    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> Message:
        """Send a request and wait for its reply; BusTimeout / NoResponders on failure."""
        token = str(next(self._tokens))
        self.requests += 1
        waiter = self._waiters[token] = _Waiter()
        try:
            await self.publish(subject, data, reply=f"{self._inbox}.{token}", headers=headers)
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            self._waiters.pop(token, None)
        if waiter.msg is None:
            self.request_timeouts += 1
            raise BusTimeout(f"no reply on {subject} within {timeout:g}s")
        if waiter.msg.is_no_responders:
            self.no_responders += 1
            raise NoResponders(f"no service answers {subject}")
        return waiter.msg

    async def _on_reply(self, msg: Any) -> None:
        waiter = self._waiters.pop(msg.subject.rpartition(".")[2], None)
        if waiter is not None:
            waiter.msg = Message(msg.subject, msg.data, msg.reply, msg.headers, self)
            waiter.event.set()

    # ---- subscriptions ----------------------------------------------------------------
    async def subscribe(self, subject: str, queue: str = "", *,
                        max_pending: int = 10_000) -> Subscription:
        """Subscribe (in a queue group when ``queue``); messages beyond max_pending drop."""
        send, receive = trio.open_memory_channel[Message](max_pending)
        sub = Subscription(self, receive)

        async def deliver(msg: Any) -> None:
            try:
                send.send_nowait(Message(msg.subject, msg.data, msg.reply, msg.headers, self))
            except trio.WouldBlock:
                sub.dropped += 1
                self.dropped += 1
                if sub.dropped % 1000 == 1:
                    logger.warning("bus.slow_consumer", subject=subject, dropped=sub.dropped)
            except trio.ClosedResourceError:
                pass

        sub._nats_sub = await self.call_aio(self.nc.subscribe, subject, queue=queue, cb=deliver,
                                            pending_msgs_limit=max_pending * 4)
        return sub

    # ---- plumbing ---------------------------------------------------------------------
    async def call_aio(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run one asyncio coroutine function from trio: for rare calls (setup, admin)."""
        return await trio_asyncio.aio_as_trio(fn, loop=self.loop)(*args, **kwargs)

    @property
    def outbox_length(self) -> int:
        return len(self._outbox)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def _start(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._inbox = self.nc.new_inbox()
        await self.call_aio(self.nc.subscribe, f"{self._inbox}.*", cb=self._on_reply,
                            pending_msgs_limit=1_000_000)
        task_status.started()
        await trio_asyncio.aio_as_trio(self._pump, loop=self.loop)()


def _with_defaults(headers: dict[str, str] | None, data: bytes) -> dict[str, str] | None:
    """``headers`` plus the trace id and, for a JSON object, its content type (one dict)."""
    trace = log.current_trace()
    is_json = data[:1] == b"{"
    if not trace and not is_json:
        return headers
    out = dict(headers) if headers else {}
    if trace:
        out.setdefault(log.TRACE_HEADER, trace)
    if is_json:
        out.setdefault(CONTENT_TYPE, JSON)
    return out
