"""Order and completeness: concurrent senders in one chat, every device sees seq order."""

from __future__ import annotations

import secrets

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.checker import Device, Expectations, Recorder, check, wait_stored

from .client import next_frame, register_and_login, send

pytestmark = pytest.mark.e2e
SENDERS, EACH = 4, 25
CHECKED = 5  # messages per user in the recorded run
HELD = {"new_message", "message_updated", "chat_updated", "void", "message_ack"}


async def test_concurrent_senders_every_device_gets_all_once_in_order(stack):
    if "router-2" not in stack.processes:  # two routers share the sends (one queue group)
        await trio.to_thread.run_sync(stack.start_replica, "router", "router-2")
    async with httpx.AsyncClient(base_url=stack.api) as http:
        people = [await register_and_login(http, f"ord{i}_{secrets.token_hex(3)}") for i in range(SENDERS)]
        chat = (await http.post("/api/v1/chats", headers=people[0].auth, json={
            "type": "group", "members": [p.user_id for p in people[1:]]})).json()["chat_id"]
        seen: dict[str, list[int]] = {p.user_id: [] for p in people}
        acked: dict[str, list[int]] = {p.user_id: [] for p in people}

        go = trio.Event()

        async def device(person, task_status=trio.TASK_STATUS_IGNORED):  # noqa: ANN001
            async with open_websocket_url(f"{stack.ws_url}?token={person.access_token}") as ws:
                await next_frame(ws, "sync_done")  # caught up (the created event): live from here
                task_status.started()
                await go.wait()

                async def sender():
                    for i in range(EACH):
                        await send(ws, {"type": "send_message", "id": f"c{i}", "chat_id": chat,
                                        "content": f"{person.username} {i}"})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sender)
                    with trio.move_on_after(30) as waited:
                        while len(set(seen[person.user_id]) | set(acked[person.user_id])) < SENDERS * EACH:
                            frame = orjson.loads(await ws.get_message())
                            # Unacked events are resent after the first backoff step; a
                            # client drops repeats by (chat, seq), keeping the first arrival.
                            if frame["type"] == "new_message" and frame["chat_id"] == chat \
                                    and frame["seq"] not in seen[person.user_id]:
                                seen[person.user_id].append(frame["seq"])
                            elif frame["type"] == "message_ack":
                                acked[person.user_id].append(frame["seq"])
                            elif frame["type"] == "error":
                                raise AssertionError(f"error frame: {frame}")

                    if waited.cancelled_caught:
                        have = set(seen[person.user_id]) | set(acked[person.user_id])
                        raise AssertionError(f"{person.username} has {len(have)}; seen tail "
                                             f"{seen[person.user_id][-5:]} acked {sorted(acked[person.user_id])[-5:]}"
                                             f" max {max(have, default=0)}")

        async with trio.open_nursery() as nursery:
            for person in people:
                await nursery.start(device, person)
            go.set()  # every device is connected before anyone sends
        every = sorted(s for seqs in acked.values() for s in seqs)
        assert len(every) == len(set(every)) == SENDERS * EACH
        for router in ("router", "router-2"):
            metrics = (await http.get(f"http://127.0.0.1:{stack.ports[router]}/metrics")).text
            assert 'nj_rpc_seconds_count{outcome="ok",verb="send"}' in metrics, f"{router} sent nothing"
        for person in people:
            got = seen[person.user_id]
            assert got == sorted(got), "out of order"
            # A gap fill from history may write a device's own message before its
            # message_ack; the device holds that seq once (repeats drop by chat and seq).
            assert sorted(set(got) | set(acked[person.user_id])) == every, "lost"


async def test_a_recorded_two_user_run_passes_the_history_checker(stack, mysql_config):
    async with httpx.AsyncClient(base_url=stack.api) as http:
        ann, ben = [await register_and_login(http, f"chk{i}_{secrets.token_hex(3)}") for i in range(2)]
        chat = (await http.post("/api/v1/chats", headers=ann.auth, json={
            "type": "direct", "members": [ben.user_id]})).json()["chat_id"]
    recorder, last_seq = Recorder(), 1 + 2 * CHECKED
    go = trio.Event()

    async def device(person, task_status=trio.TASK_STATUS_IGNORED):  # noqa: ANN001
        me, held, started = Device(person.user_id, person.device_id), set(), False
        async with (open_websocket_url(f"{stack.ws_url}?token={person.access_token}") as ws,
                    trio.open_nursery() as nursery):
            nursery.start_soon(_send_when, go, ws, recorder, me, chat)
            with trio.fail_after(30):
                while len(held) < last_seq:
                    frame = orjson.loads(await ws.get_message())
                    recorder.observe(me, frame)
                    if frame["type"] == "sync_done" and not started:
                        started = True  # caught up: live from here
                        task_status.started()
                    elif frame["type"] in HELD and frame["chat_id"] == chat:
                        held.add(frame["seq"])

    async with trio.open_nursery() as nursery:
        for person in (ann, ben):
            await nursery.start(device, person)
        go.set()
    stored = await wait_stored(mysql_config, {chat: last_seq})
    devices = [Device(p.user_id, p.device_id) for p in (ann, ben)]
    report = check(recorder, stored, Expectations(complete=devices))
    report.assert_ok()
    assert report.stats["stored"] == last_seq


async def _send_when(go: trio.Event, ws, recorder: Recorder, me: Device, chat: str) -> None:  # noqa: ANN001
    await go.wait()
    for i in range(CHECKED):
        frame = {"type": "send_message", "id": f"k{i}", "chat_id": chat, "content": f"{me.user_id} {i}",
                 "metadata": {"n": i}}
        recorder.sent(me, frame)
        await send(ws, frame)
