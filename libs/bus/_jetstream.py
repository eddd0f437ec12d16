"""JetStream over the bridge: publish with de-duplication ids and pull consumers.

A JetStream publish is a request to the stream's subject answered by a PubAck, so it
rides :meth:`Bus.request` (one outbox append, no per-message asyncio crossing). A pull
consumer runs one asyncio task that fetches batches with nats-py and hands each batch to
trio as one channel send; credits keep at most ``prefetch`` batches in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats.errors
import nats.js.errors
import orjson
import trio
import trio_asyncio

from .. import log
from ..errors import NatterjackError, Unavailable
from ._bus import Bus, BusTimeout, NoResponders
from ._message import JsMessage, PubAck

logger = log.get("bus.js")
MSG_ID_HEADER = "Nats-Msg-Id"


class JetStreamError(Unavailable):
    """Raised when JetStream refuses a publish (stream missing, storage full, …)."""


async def js_publish(bus: Bus, subject: str, data: bytes, *, msg_id: str,
                     headers: dict[str, str] | None = None, attempt_timeout: float = 2.0,
                     deadline: float = 10.0) -> PubAck:
    """Publish durably: returns once JetStream has stored the message (PubAck).

    A timed-out attempt is retried with the same ``Nats-Msg-Id`` so the stream stores the
    message once however often it is sent (within the stream's duplicate window).
    """
    headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
    with trio.move_on_after(deadline):
        while True:
            try:
                reply = await bus.request(subject, data, timeout=attempt_timeout, headers=headers)
            except (BusTimeout, NoResponders):
                await trio.sleep(0.05)
                continue
            return _parse_puback(reply.data)
    raise Unavailable(f"JetStream did not store {subject} within {deadline:g}s")


async def js_stored(bus: Bus, stream: str, seq: int) -> bytes:
    """The body of the message stored at ``seq`` in ``stream`` (rare: settling a duplicate)."""
    try:
        stored = await bus.call_aio(bus.nc.jsm().get_msg, stream, seq)
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
        raise Unavailable(f"JetStream could not read {stream} #{seq}: {exc!r}") from exc
    return bytes(stored.data or b"")


def _parse_puback(data: bytes) -> PubAck:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JetStreamError(f"unreadable PubAck: {data[:80]!r}") from exc
    if "error" in body:
        raise JetStreamError(f"JetStream refused the publish: {body['error']}")
    return PubAck(stream=body["stream"], seq=body["seq"], duplicate=bool(body.get("duplicate")))


def _to_js_message(bus: Bus, msg: Any) -> JsMessage:
    meta = msg.metadata
    return JsMessage(msg.subject, msg.data, msg.reply, msg.headers, bus,
                     stream_seq=meta.sequence.stream, num_delivered=meta.num_delivered)


@asynccontextmanager
async def pull_consumer(bus: Bus, stream: str, durable: str, *, batch: int = 100,
                        expires: float = 1.0, prefetch: int = 2
                        ) -> AsyncIterator[trio.MemoryReceiveChannel[list[JsMessage]]]:
    """Yield a channel of message batches from a durable pull consumer.

    The fetching task survives NATS restarts: errors are logged and retried with backoff.
    Receiving a batch from the channel hands the fetch task a credit for the next one.
    """
    send, receive = trio.open_memory_channel[list[JsMessage]](prefetch)
    credits = asyncio.Semaphore(prefetch)
    subscriptions: list[Any] = []

    async def fetch_loop() -> None:
        backoff = 0.1
        psub = None
        while True:
            try:
                if psub is None:
                    psub = await bus.nc.jetstream().pull_subscribe_bind(durable=durable, stream=stream)
                    subscriptions.append(psub)
                await credits.acquire()
                try:
                    msgs = await psub.fetch(batch, timeout=expires)
                except (TimeoutError, nats.errors.TimeoutError):
                    credits.release()
                    continue
                send.send_nowait([_to_js_message(bus, m) for m in msgs])
                backoff = 0.1
            except trio.WouldBlock:
                credits.release()
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                credits.release()
                logger.warning("bus.fetch_failed", stream=stream, durable=durable, error=repr(exc))
                psub = None if isinstance(exc, nats.js.errors.NotFoundError) else psub
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio_asyncio.aio_as_trio(fetch_loop, loop=bus.loop))
        try:
            yield _CreditingChannel(receive, credits)  # type: ignore[misc]
        finally:
            nursery.cancel_scope.cancel()
    # An abandoned pull subscription would hold up the connection's drain at shutdown
    # (nats-py waits for its queue to empty), so release each one we made.
    with trio.CancelScope(shield=True), trio.move_on_after(2):
        for psub in subscriptions:
            try:
                await bus.call_aio(psub.unsubscribe)
            except Exception as exc:  # noqa: BLE001 - closed or reconnecting: nothing to release
                logger.debug("bus.pull_unsubscribe_failed", error=repr(exc))


class _CreditingChannel:
    """Receive side that returns a fetch credit for every batch taken."""

    def __init__(self, receive: trio.MemoryReceiveChannel[list[JsMessage]], credits: asyncio.Semaphore):
        self._receive = receive
        self._credits = credits

    async def receive(self) -> list[JsMessage]:
        msgs = await self._receive.receive()
        self._credits.release()
        return msgs

    def __aiter__(self) -> _CreditingChannel:
        return self

    async def __anext__(self) -> list[JsMessage]:
        return await self.receive()


__all__ = ["js_publish", "pull_consumer", "JetStreamError", "NatterjackError"]
