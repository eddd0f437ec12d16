"""Request/reply between services over the bus, with the contract's error shape.

A reply is ``{"ok": <payload>}`` or ``{"error": {"code", "message", "details"?}}``
(``proto/schemas/nats/reply.json``). Handlers are plain ``async def(payload) -> payload``
and raise :class:`NatterjackError` subclasses; the server side here turns those into
error replies, binds the caller's trace id, and bounds concurrency.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio

from . import log, metrics
from .bus import Bus, Message
from .errors import INTERNAL, Malformed, NatterjackError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
logger = log.get("rpc")
# When the caller stops waiting (epoch ms). A request still queued past it is dropped
# unanswered: under overload, work nobody waits for would only delay the requests behind
# it, and a send stored after its caller was told it failed surprises the client.
DEADLINE_HEADER = "Nj-Deadline"
# Hosts' clocks differ a little: a request is dropped only this long after its deadline.
DEADLINE_SKEW_S = 0.5


def encode(value: Any) -> bytes:
    """``value`` as JSON; Malformed when it cannot be (e.g. nested deeper than orjson's 255 levels)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise Malformed(f"payload cannot be encoded as JSON: {exc}") from None


def decode_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed("body must be a JSON object")
    return value


async def call(bus: Bus, subject: str, payload: Any, *, timeout: float) -> Any:
    """Request ``subject`` and return the ``ok`` payload, or raise the replied error."""
    deadline = str(int((time.time() + timeout) * 1000))
    reply = await bus.request(subject, encode(payload), timeout=timeout,
                              headers={DEADLINE_HEADER: deadline})
    body = decode_object(reply.data)
    if "error" in body:
        raise NatterjackError.from_body(body["error"])
    return body.get("ok")


def expired(msg: Message) -> bool:
    """The caller stopped waiting for this request (its deadline is past, skew allowed)."""
    deadline = msg.headers.get(DEADLINE_HEADER) if msg.headers else None
    try:
        return deadline is not None and time.time() - DEADLINE_SKEW_S > int(deadline) / 1000
    except ValueError:  # not ours to judge: answer it
        return False


async def _answer(msg: Message, handler: Handler, verb: str) -> None:
    log.bind_trace(msg.trace_id)
    if expired(msg):
        metrics.RPC_EXPIRED.labels(verb).inc()
        return
    started = trio.current_time()
    try:
        result: Any = {"ok": await handler(decode_object(msg.data))}
        outcome = "ok"
    except NatterjackError as exc:
        result, outcome = {"error": exc.to_body()}, str(exc.code)
    except Exception:
        logger.exception("rpc.handler_failed", subject=msg.subject)
        result, outcome = {"error": {"code": INTERNAL, "message": "internal error"}}, "5000"
    metrics.RPC_SECONDS.labels(verb, outcome).observe(trio.current_time() - started)
    await msg.respond(orjson.dumps(result))


class Intake:
    """The request loops of one service, so shutdown can stop taking requests and still
    answer the ones already taken: ``close()`` unsubscribes every loop (the queue group
    routes new requests to other replicas); ``drained()`` returns once each loop's
    requests in hand are answered."""

    def __init__(self) -> None:
        self.closed = False
        self._loops: set[trio.CancelScope] = set()
        self._idle = trio.Event()
        self._idle.set()

    def close(self) -> None:
        self.closed = True
        for scope in self._loops:
            scope.cancel()

    async def drained(self) -> None:
        await self._idle.wait()

    def _enter(self, scope: trio.CancelScope) -> None:
        if self.closed:
            scope.cancel()
        if not self._loops:
            self._idle = trio.Event()
        self._loops.add(scope)

    def _leave(self, scope: trio.CancelScope) -> None:
        self._loops.discard(scope)
        if not self._loops:
            self._idle.set()


async def serve_rpc(bus: Bus, subject: str, queue: str, handler: Handler, *,
                    concurrency: int = 64, intake: Intake | None = None,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on ``subject`` (queue group ``queue``) until cancelled, or until
    ``intake`` closes: then the requests in hand are answered and this returns."""
    sub = await bus.subscribe(subject, queue=queue)
    limiter = trio.CapacityLimiter(concurrency)
    verb = subject.split(".", 2)[-1]
    receiving = trio.CancelScope()
    if intake is not None:
        intake._enter(receiving)

    async def one(msg: Message) -> None:
        try:
            await _answer(msg, handler, verb)
        finally:
            limiter.release_on_behalf_of(msg)

    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            with receiving:
                async for msg in sub:
                    await limiter.acquire_on_behalf_of(msg)
                    nursery.start_soon(one, msg)
            with trio.CancelScope(shield=True):
                await sub.close()  # no more requests come here while those in hand finish
    finally:
        with trio.CancelScope(shield=True):
            await sub.close()
        if intake is not None:
            intake._leave(receiving)
