"""A bus request still queued after its caller stopped waiting is dropped, not handled
(real NATS): under overload the work would only delay the requests behind it, and a send
stored after its caller was told it failed would surprise the client."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from libs import metrics, rpc
from libs.bus import BusTimeout, Message, open_bus
from libs.natsd import NatsServer

pytestmark = pytest.mark.timeout(30)


def _message(headers: dict[str, str] | None) -> Message:
    return Message("im.probe", b"{}", "", headers, bus=None)  # type: ignore[arg-type]


def test_a_request_expires_only_past_its_deadline_and_the_allowed_skew() -> None:
    now_ms = int(time.time() * 1000)
    assert rpc.expired(_message({rpc.DEADLINE_HEADER: str(now_ms - 2000)}))
    assert not rpc.expired(_message({rpc.DEADLINE_HEADER: str(now_ms - 100)}))  # within the skew
    assert not rpc.expired(_message({rpc.DEADLINE_HEADER: str(now_ms + 5000)}))
    assert not rpc.expired(_message(None))  # a caller that named no deadline is always answered
    assert not rpc.expired(_message({rpc.DEADLINE_HEADER: "soon"}))


async def test_a_request_queued_past_its_deadline_is_dropped(nats_server: NatsServer) -> None:
    handled: list[int] = []
    release = trio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        handled.append(payload["n"])
        await release.wait()
        return {}
    dropped = metrics.RPC_EXPIRED.labels("deadline")._value.get()
    async with open_bus(nats_server.url, name="deadline") as bus, trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: rpc.serve_rpc(
            bus, "im.probe.deadline", "probe", slow, concurrency=1, task_status=task_status))
        nursery.start_soon(lambda: rpc.call(bus, "im.probe.deadline", {"n": 1}, timeout=10))
        await trio.sleep(0.2)  # the only handler slot is taken
        with pytest.raises(BusTimeout):  # queued behind it: the caller gives up
            await rpc.call(bus, "im.probe.deadline", {"n": 2}, timeout=0.2)
        await trio.sleep(rpc.DEADLINE_SKEW_S + 0.3)
        release.set()  # the slot frees long after request 2's caller stopped waiting
        assert await rpc.call(bus, "im.probe.deadline", {"n": 3}, timeout=5) == {}
        nursery.cancel_scope.cancel()
    assert handled == [1, 3]
    assert metrics.RPC_EXPIRED.labels("deadline")._value.get() == dropped + 1
