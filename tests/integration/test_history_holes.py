"""history's hole filler against real NATS JetStream and MySQL, with the test answering
im.router.holes the way the router does (it stores a void with the event's msg-id).

The case here is the one the in-memory tracker cannot see: history restarted after storing
events around a hole, so the hole is found in MySQL below the chat's first event seen.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio

from libs import ids, rpc
from libs.bus import Bus, js_publish
from libs.events import msg_id, stream_subject
from services.history import app
from services.history.config import load
from tests.integration.test_history_writer import (
    created,
    message,
    new_chat,
    publish,
    seqs,
    wait_for_seq,
)

HOLE_AFTER_S = 1.0


async def test_a_hole_stored_before_a_restart_is_found_and_voided(common_env) -> None:
    config = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="20", NJ_HISTORY_HOLE_AFTER_S="30",
                             NJ_HISTORY_HOLE_CHECK_S="0.1"))
    chat = new_chat()
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, config)
        for event in (created(chat, "u1"), message(chat, 2), message(chat, 4)):
            await publish(runtime.bus, event)
        await wait_for_seq(runtime.bus, chat, 4)
        runtime.stopping.set()  # long before hole_after: this process never reports 3
    asked: list[dict[str, Any]] = []
    restarted = load(common_env("history", NJ_HISTORY_BATCH_WAIT_MS="20",
                                NJ_HISTORY_HOLE_AFTER_S=str(HOLE_AFTER_S), NJ_HISTORY_HOLE_CHECK_S="0.1"))
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, restarted)
        bus = runtime.bus

        async def router(payload: dict[str, Any]) -> dict[str, Any]:
            asked.append(payload)
            for seq in payload["seqs"]:
                await void(bus, payload["chat_id"], seq)
            return {"voided": len(payload["seqs"])}
        await nursery.start(rpc.serve_rpc, bus, "im.router.holes", "router", router)
        started = trio.current_time()
        await publish(bus, message(chat, 5))  # the chat's first event since the start
        with trio.fail_after(15):
            while True:
                answer = await wait_for_seq(bus, chat, 5)
                if 3 in seqs(answer):
                    break
                await trio.sleep(0.1)
        waited = trio.current_time() - started
        runtime.stopping.set()
        nursery.cancel_scope.cancel()
    assert asked == [{"chat_id": chat, "seqs": [3]}]
    assert HOLE_AFTER_S <= waited < HOLE_AFTER_S + 5
    assert seqs(answer) == [1, 2, 3, 4, 5] and answer["events"][2]["type"] == "void"


async def void(bus: Bus, chat: str, seq: int) -> None:
    event = {"event": "void", "chat_id": chat, "seq": seq, "ts": ids.now_ms(), "reason": "abandoned"}
    await js_publish(bus, stream_subject(chat), orjson.dumps(event), msg_id=msg_id(chat, seq))
