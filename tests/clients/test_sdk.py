"""The Python SDK against the whole product running as processes.

The stack runs with the shortest access-token lifetime auth allows (30 s) and fast
redelivery: the last test waits for the token of a login made when the module started to
expire (4402) while the others run, and unacked events really come twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from natterjack_client import (
    ApiError,
    Client,
    Credentials,
    HistoryPage,
    LoginRequired,
    NewMessage,
    ReconnectPolicy,
    Session,
    StoredEvent,
)

from tools.stack import Stack

from .conftest import PASSWORD, client_stack, logged_in, unique

pytestmark = pytest.mark.e2e
TOKEN_TTL_S = 30
FAST_RECONNECT = ReconnectPolicy(initial_s=0.05, max_s=0.5)
FAST_REDELIVERY = {"NJ_DLV_BACKOFF_S": "0.2,0.3,0.4", "NJ_DLV_MAX_ATTEMPTS": "4",
                   "NJ_DLV_SCAN_INTERVAL_MS": "20", "NJ_DLV_LEASE_S": "1"}


@pytest.fixture(scope="module")
def stack(common_env) -> Iterator[Stack]:
    with client_stack(common_env, NJ_ACCESS_TOKEN_TTL_S=str(TOKEN_TTL_S), **FAST_REDELIVERY) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def expiring(stack: Stack) -> Credentials:
    """A login made when the module starts: its access token expires while the tests run."""
    username = unique("early")
    with httpx.Client(base_url=stack.api) as http:
        assert http.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD}
                         ).status_code == 201
        answer = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    return Credentials.from_json(answer.json())


async def stored_until(session: Session, chat_id: str, last_seq: int,
                       timeout: float = 15) -> list[StoredEvent]:
    """The chat's stored events as the session hands them out, up to ``last_seq``."""
    got: list[StoredEvent] = []
    with trio.fail_after(timeout):
        async for event in session:
            if isinstance(event, StoredEvent) and event.chat_id == chat_id:
                got.append(event)
                if event.seq >= last_seq:
                    return got
    raise AssertionError(f"session ended early: {session.failure}")


async def drain(session: Session, seconds: float) -> list[Any]:
    got = []
    with trio.move_on_after(seconds):
        async for event in session:
            got.append(event)
    return got


async def history_until(client: Client, chat_id: str, last_seq: int) -> HistoryPage:
    """The chat's first page once history holds ``last_seq`` (it is written a little later)."""
    with trio.fail_after(10):
        while not _reaches(page := await client.history(chat_id, after_seq=0), last_seq):  # noqa: ASYNC110 - polling the server
            await trio.sleep(0.05)
    return page


def _reaches(page: HistoryPage, seq: int) -> bool:
    return bool(page.events) and page.events[-1].seq >= seq


def assert_dense(events: list[StoredEvent], first: int, last: int) -> None:
    assert [e.seq for e in events] == list(range(first, last + 1))


async def test_two_clients_send_and_receive_in_order(stack):
    async with logged_in(stack, "alice") as alice, logged_in(stack, "bob") as bob:
        chat = await alice.create_chat([bob.credentials.user_id], type="direct")
        async with alice.connect(receive_events=False) as a, bob.connect() as b:
            acks = [await a.send_message(chat.chat_id, f"m{i}", metadata={"i": i}) for i in range(10)]
            got = await stored_until(b, chat.chat_id, acks[-1].seq)
        messages = [e for e in got if isinstance(e, NewMessage)]
        assert [(m.content, m.metadata) for m in messages] == [(f"m{i}", {"i": i}) for i in range(10)]
        assert [m.seq for m in messages] == [ack.seq for ack in acks]
        assert {m.sender_id for m in messages} == {alice.credentials.user_id}
        page = await history_until(bob, chat.chat_id, acks[-1].seq)
        assert_dense(page.events, 1, acks[-1].seq)
        assert page.events[-1].content == "m9"


async def test_redelivered_and_repeated_sends_come_out_once(stack):
    async with logged_in(stack, "ann") as ann, logged_in(stack, "ben") as ben:
        chat = await ann.create_chat([ben.credentials.user_id], type="direct")
        async with ann.connect(receive_events=False) as a, ben.connect(auto_ack=False) as b:
            acks = [await a.send_message(chat.chat_id, f"x{i}", client_id=f"c{i}") for i in range(5)]
            again = await a.send_message(chat.chat_id, "x0", client_id="c0")
            events = [e for e in await drain(b, 1.5) if isinstance(e, StoredEvent)]
        assert (again.seq, again.message_id) == (acks[0].seq, acks[0].message_id)  # one message
        assert_dense(events, 1, acks[-1].seq)
        status = await ann.message_status(acks[0].message_id)
        assert max(r.attempts for r in status.recipients) >= 2  # the server really sent it again


async def test_gateway_restart_loses_nothing(stack):
    async with logged_in(stack, "cat") as cat, logged_in(stack, "dog") as dog:
        chat = (await cat.create_chat([dog.credentials.user_id], type="direct")).chat_id
        async with cat.connect(reconnect=FAST_RECONNECT, receive_events=False) as a, \
                dog.connect(reconnect=FAST_RECONNECT) as b:
            sent = [await a.send_message(chat, f"before {i}") for i in range(5)]
            await trio.to_thread.run_sync(lambda: stack.stop("gateway", kill=True))
            async with trio.open_nursery() as nursery:
                for i in range(5):  # no socket now: they go out when the session is back
                    nursery.start_soon(lambda i=i: _append(sent, a.send_message(chat, f"during {i}")))
                await trio.sleep(0.3)
                stack.start("gateway")
                await trio.to_thread.run_sync(stack.wait_ready, "gateway")
            sent += [await a.send_message(chat, f"after {i}") for i in range(5)]
            got = await stored_until(b, chat, max(ack.seq for ack in sent))
        assert a.reconnects >= 1 and b.reconnects >= 1
        assert_dense(got, got[0].seq, max(ack.seq for ack in sent))
        texts = [e.content for e in got if isinstance(e, NewMessage)]
        assert sorted(texts) == sorted(f"{when} {i}" for when in ("before", "during", "after") for i in range(5))


async def _append(into: list[Any], awaitable: Any) -> None:
    into.append(await awaitable)


async def test_a_gap_is_filled_from_history(stack):
    async with logged_in(stack, "eve") as eve, logged_in(stack, "fay", device_id="phone") as fay:
        chat = (await eve.create_chat([fay.credentials.user_id], type="direct")).chat_id
        async with eve.connect(receive_events=False) as a:
            async with fay.connect() as b:  # takes and acks the first three
                first = [await a.send_message(chat, f"old {i}") for i in range(3)]
                await stored_until(b, chat, first[-1].seq)
                await _acked_by(eve, first[-1].message_id, "phone")
            later = [await a.send_message(chat, f"new {i}") for i in range(3)]
        # A client that lost its state: the server resumes above its ack cursor, the SDK
        # sees seq 5 while holding 0 and pages 1..4 from history.
        async with fay.connect(positions={chat: 0}) as b:
            got = await stored_until(b, chat, later[-1].seq)
        assert_dense(got, 1, later[-1].seq)
        assert {e.raw["type"] for e in got if e.seq <= first[-1].seq} <= {"message", "chat_updated"}
        assert [e.content for e in got if isinstance(e, NewMessage)][-3:] == ["new 0", "new 1", "new 2"]


async def _acked_by(client: Client, message_id: str, device_id: str) -> None:
    with trio.fail_after(10):
        while True:
            status = await client.message_status(message_id)
            if any(r.device_id == device_id and r.status in ("delivered", "read") for r in status.recipients):
                return
            await trio.sleep(0.05)


async def test_rest_surface(stack):
    async with logged_in(stack, "gil") as gil, logged_in(stack, "hal") as hal, \
            logged_in(stack, "ida") as ida:
        ids = [c.credentials.user_id for c in (gil, hal, ida)]
        group = await gil.create_chat([ids[1]], name="team")
        assert (group.type, group.name) == ("group", "team")
        grown = await gil.add_member(group.chat_id, ids[2])
        assert {m.user_id for m in grown.members} == set(ids)
        await gil.remove_member(group.chat_id, ids[2])
        assert {m.user_id for m in (await hal.chat(group.chat_id)).members} == set(ids[:2])
        assert group.chat_id in {c.chat_id for c in await hal.chats()}
        name = unique("poll")
        created = await gil.register_message_type(name, {"type": "object"})
        assert (created.name, created.version, created.created) == (name, 1, True)
        assert name in {t.name for t in await hal.message_types()}
        assert (await hal.presence(ids[0])).status in ("online", "offline")
        with pytest.raises(ApiError) as refused:
            await ida.chat(group.chat_id)
        assert refused.value.code in (4001, 4003)
        with pytest.raises(LoginRequired):
            await Client(stack.api).login(unique("nobody"), "wrong password")


async def test_logout_ends_the_session_with_login_required(stack):
    async with logged_in(stack, "jon") as jon, jon.connect() as session:
        await jon.logout()
        with pytest.raises(LoginRequired) as ended, trio.fail_after(10):
            async for _ in session:
                pass
        assert ended.value.close_code == 4401


async def test_an_expired_token_is_refreshed_and_the_session_goes_on(stack, expiring):
    """Last on purpose: the token logged in at module start expires while the others ran."""
    left = expiring.expires_at - time.time()
    async with Client(stack.api, credentials=expiring) as kim, logged_in(stack, "lou") as lou:
        chat = (await lou.create_chat([kim.credentials.user_id], type="direct")).chat_id
        async with kim.connect(reconnect=FAST_RECONNECT) as k, lou.connect(receive_events=False) as lo:
            with trio.fail_after(max(left, 0) + 15):
                while k.reconnects < 1:  # noqa: ASYNC110 - a plain counter, polled
                    await trio.sleep(0.05)
            assert k.last_close_code == 4402
            assert kim.credentials.access_token != expiring.access_token
            ack = await lo.send_message(chat, "still here")
            got = await stored_until(k, chat, ack.seq)
            await k.send_message(chat, "me too")
        assert got[-1].content == "still here"

