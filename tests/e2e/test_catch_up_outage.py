"""Catch-up on connect while history is restarting: the gateway waits for it (within
NJ_GATEWAY_CATCH_UP_WAIT_S) instead of telling the client an error it can do nothing about
and calling the chat caught up."""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from tools.stack import Stack

from .client import direct_pair, send, validate_frame

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_a_backlog_read_while_history_restarts_arrives_whole_without_an_error(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, chat_id = await direct_pair(http, "co")
        sent = []
        async with open_websocket_url(f"{stack.ws_url}?token={a.access_token}") as ws_a:
            for i in range(3):
                await send(ws_a, {"type": "send_message", "id": f"m{i}", "chat_id": chat_id,
                                  "content": f"while away {i}"})
                while (frame := orjson.loads(await ws_a.get_message()))["type"] != "message_ack":
                    pass
                sent.append(frame["seq"])
        await _wait_stored(http, a.auth, chat_id, sent[-1])
        stack.stop("history", kill=True)
        try:
            frames = await _connect_while_history_returns(stack, b.access_token, chat_id)
        finally:
            if "history" not in stack.processes:
                stack.start("history")
            await trio.to_thread.run_sync(stack.wait_ready, "history")
    assert not [f for f in frames if f["type"] == "error"], frames
    assert [f["seq"] for f in frames if f["type"] == "new_message"] == sent
    assert frames[-1] == {"type": "sync_done", "chat_id": chat_id, "last_seq": sent[-1]}


async def _connect_while_history_returns(stack: Stack, token: str, chat_id: str) -> list[dict]:
    """Connect, start history a moment later, read until the chat's sync_done."""
    frames: list[dict] = []
    async with open_websocket_url(f"{stack.ws_url}?token={token}") as ws, trio.open_nursery() as nursery:
        async def bring_history_back() -> None:
            await trio.sleep(0.5)
            stack.start("history")
        nursery.start_soon(bring_history_back)
        with trio.fail_after(30):
            while not frames or frames[-1]["type"] != "sync_done":
                frame = validate_frame(orjson.loads(await ws.get_message()))
                if frame.get("chat_id") == chat_id or frame["type"] == "error":
                    frames.append(frame)
    return frames


async def _wait_stored(http: httpx.AsyncClient, auth: dict[str, str], chat_id: str, seq: int) -> None:
    with trio.fail_after(15):
        while True:
            page = await http.get(f"/api/v1/chats/{chat_id}/messages", headers=auth)
            if page.status_code == 200 and any(e["seq"] == seq for e in page.json()["events"]):
                return
            await trio.sleep(0.05)
