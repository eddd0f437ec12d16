"""NATS: junk straight onto the bus, as a client with every permission (the test nats-server
has no users), bypassing the gateway.

Every request subject of proto/subjects.yaml gets random bytes, any JSON, broken JSON and
mutated valid payloads; each must be answered within the timeout with ``{"ok": ...}`` or an
``{"error": ...}`` carrying a contract code (never 5000, never 5003 on a healthy stack).
The fire-and-forget subjects (deliveries, announcements, presence and revocation events)
get the same junk and must leave the product working. JetStream gets junk on the messages
stream: history and delivery-retry terminate what they cannot read, log it, and go on
with later events (no poison pill). Afterwards every service still runs, and MySQL holds
only what ok replies announced.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import trio
import yaml
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from libs import contracts
from libs.bus import Bus, BusTimeout, NoResponders, js_publish, open_bus
from libs.streams import STREAM
from tests.checker import wait_stored
from tests.e2e.client import PASSWORD, User, next_frame, register_and_login, send

from .conftest import CODES, EXAMPLES, assert_alive, assert_error_body, logged_errors, query
from .loop import Loop
from .strategies import BROKEN_JSON, JSON, encode, from_schema, mutated, nested

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
CATALOGUE = yaml.safe_load((contracts.proto_dir() / "subjects.yaml").read_text())
REQUESTS = sorted(e["name"] for e in CATALOGUE["subjects"]
                  if e["kind"] == "request/reply" and e.get("status") != "planned")
REPLY_TIMEOUT_S = 10.0
# Subjects whose ok reply may store something in the seeded chat (one event at most).
STORES_EVENT = {"im.router.send", "im.router.chat.update", "im.router.members.add",
                "im.router.members.remove", "im.router.owner.transfer", "im.router.message.update"}


def session_id(token: str) -> str:
    claims = token.split(".")[1]
    return str(orjson.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sid"])


@dataclass
class World:
    api: str
    a: User
    b: User
    c: User
    spare: User
    chat_id: str  # a owns it, b is a member
    other_chat: str  # a owns it, c is a member
    message_id: str
    refresh_token: str
    bus: Bus | None = None
    tried_users: set[str] = field(default_factory=set)
    created_users: set[str] = field(default_factory=set)
    created_chats: set[str] = field(default_factory=set)
    chat_changes: int = 0

    def valid(self, subject: str) -> dict[str, Any]:
        a, b, chat = self.a.user_id, self.b.user_id, self.chat_id
        return {
            "im.auth.register": {"username": f"fzn{secrets.token_hex(3)}", "password": PASSWORD,
                                 "client_ip": "127.0.0.1"},
            "im.auth.login": {"username": self.a.username, "password": PASSWORD, "device_id": "fzn",
                              "client_ip": "127.0.0.1"},
            "im.auth.refresh": {"refresh_token": self.refresh_token},
            "im.auth.logout": {"session_id": session_id(self.spare.access_token)},
            "im.auth.verify": {"session_id": session_id(self.a.access_token)},
            "im.auth.jwks": {},
            "im.auth.users.exist": {"user_ids": [a, b]},
            "im.auth.sessions.list": {"user_id": a, "session_id": session_id(self.a.access_token),
                                      "device_id": "d1"},
            "im.auth.sessions.revoke": {"user_id": self.spare.user_id, "device_id": "nodevice"},
            "im.auth.devices": {"user_ids": [a, b]},
            "im.router.send": {"sender_id": a, "sender_device_id": "d1", "client_msg_id": "n1",
                               "chat_id": chat, "content": "hi"},
            "im.router.read": {"user_id": b, "chat_id": chat, "seq": 1},
            "im.router.reads": {"chat_id": chat},
            "im.router.typing": {"user_id": a, "device_id": "d1", "chat_id": chat, "typing": True},
            "im.router.chat.create": {"creator_id": a, "type": "group", "members": [b], "name": "n"},
            "im.router.chat.get": {"user_id": a, "chat_id": chat},
            "im.router.chat.list": {"user_id": a},
            "im.router.chat.update": {"actor_id": a, "chat_id": chat, "name": "r"},
            "im.router.members.add": {"actor_id": a, "chat_id": chat, "user_id": b, "role": "admin"},
            "im.router.members.remove": {"actor_id": a, "chat_id": self.other_chat, "user_id": self.c.user_id},
            "im.router.owner.transfer": {"actor_id": a, "chat_id": self.other_chat, "user_id": self.c.user_id},
            "im.router.message.update": {"actor_id": a, "actor_device_id": "d1", "chat_id": chat,
                                         "target_seq": 2, "kind": "edit", "content": "e"},
            "im.router.types.register": {"registrant_id": a, "name": "fzn.t", "version": 1,
                                         "schema": {"type": "object"}},
            "im.router.types.list": {},
            "im.router.holes": {"chat_id": chat, "seqs": [1]},  # stored already: the void is dropped
            "im.history.page": {"chat_id": chat, "user_id": a, "limit": 10},
            "im.history.get": {"user_id": a, "chat_id": chat, "seq": 2},
            "im.history.search": {"chat_id": chat, "user_id": a, "q": "hi"},
            "im.dlv.ack": {"user_id": b, "device_id": "d1", "chat_id": chat, "seq": 1},
            "im.dlv.status": {"user_id": a, "message_id": self.message_id},
            "im.dlv.sync": {"user_id": a, "device_id": "d1", "all": True},
            "im.dlv.cursor": {"user_id": a, "device_id": "d1", "chat_id": chat},
        }[subject]


def known_fields(subject: str) -> list[str]:
    schema = request_schema(subject)
    variants = schema.get("oneOf", [schema])
    return sorted({name for variant in variants for name in variant.get("properties", {})})


async def _seed(api: str) -> World:
    async with httpx.AsyncClient(base_url=api) as http:
        a, b, c, spare = [await register_and_login(http, f"fzn_{n}_{secrets.token_hex(4)}") for n in "abcs"]
        chats = []
        for member in (b, c):
            answer = await http.post("/api/v1/chats", headers=a.auth, json={
                "type": "group", "name": "fuzz", "members": [member.user_id]})
            assert answer.status_code == 201, answer.text
            chats.append(answer.json()["chat_id"])
        login = await http.post("/api/v1/auth/login", json={
            "username": spare.username, "password": PASSWORD, "device_id": "fz-refresh"})
        async with open_websocket_url(f"{a.ws_url}?token={a.access_token}") as ws:
            await send(ws, {"type": "send_message", "id": "seed", "chat_id": chats[0], "content": "hi"})
            ack = await next_frame(ws, "message_ack")
    return World(api, a, b, c, spare, chats[0], chats[1], ack["message_id"], login.json()["refresh_token"])


async def _hold_bus(url: str, task_status: trio.TaskStatus[Bus] = trio.TASK_STATUS_IGNORED) -> None:
    async with open_bus(url, name="fuzz") as bus:
        task_status.started(bus)
        await trio.sleep_forever()


@pytest.fixture(scope="module")
def world(stack, stack_nats, loop: Loop) -> Iterator[World]:
    seeded = loop.run(_seed, stack.api)
    seeded.bus = loop.run(loop.nursery.start, _hold_bus, stack_nats.url)
    yield seeded


def real_values(world: World, subject: str) -> dict[str, list[Any]]:
    """Ids that exist, for in-schema payloads; the session-ending subjects get the spare's."""
    a, b, c = world.a.user_id, world.b.user_id, world.c.user_id
    if subject in ("im.auth.logout", "im.auth.sessions.revoke"):
        return {"session_id": [session_id(world.spare.access_token)], "user_id": [world.spare.user_id]}
    if subject == "im.auth.login":  # a login on a device ends that device's session: not a's own
        return {"username": [world.a.username], "password": [PASSWORD], "device_id": ["fzn"]}
    return {"user_id": [a, b, c], "chat_id": [world.chat_id, world.other_chat], "sender_id": [a],
            "actor_id": [a], "creator_id": [a], "registrant_id": [a], "device_id": ["d1"],
            "sender_device_id": ["d1"], "actor_device_id": ["d1"], "message_id": [world.message_id],
            "session_id": [session_id(world.a.access_token)], "seq": [1, 2], "target_seq": [2],
            "user_ids": [[a, b]], "members": [[b], [c]], "username": [world.a.username],
            "password": [PASSWORD], "refresh_token": [world.refresh_token],
            # Around the 255 levels the bus encoder stops at: storable, but never readable again.
            "content": [nested("x", 250)], "metadata": [{"m": nested("x", 250)}]}


def request_schema(subject: str) -> dict[str, Any]:
    entry = next(e for e in CATALOGUE["subjects"] if e["name"] == subject)
    return contracts.load_json(entry["request_schema"])  # type: ignore[no-any-return]


def payloads(world: World, subject: str) -> st.SearchStrategy[bytes]:
    valid = mutated(world.valid(subject), known_fields(subject))
    fitting = from_schema(request_schema(subject), real_values(world, subject))
    as_bytes = [strategy.map(lambda v: encode(v).encode()) for strategy in (valid, fitting, fitting, JSON)]
    return st.one_of(*as_bytes, BROKEN_JSON.map(str.encode), st.binary(max_size=200))


async def _ask(bus: Bus, subject: str, data: bytes) -> Any:
    try:
        reply = await bus.request(subject, data, timeout=REPLY_TIMEOUT_S)
    except (BusTimeout, NoResponders) as exc:
        raise AssertionError(f"{subject} {data[:300]!r}: {exc}") from None
    return orjson.loads(reply.data)


def check_reply(subject: str, data: bytes, reply: Any) -> None:
    what = f"{subject} {data[:300]!r} -> {reply!r:.300}"
    assert isinstance(reply, dict) and len(reply) == 1 and set(reply) <= {"ok", "error"}, what
    if "error" in reply:
        assert_error_body(reply["error"], CODES)


def record(world: World, subject: str, data: bytes, reply: dict[str, Any]) -> None:
    try:
        sent = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(sent, dict):
        return
    if subject == "im.auth.register" and isinstance(sent.get("username"), str):
        world.tried_users.add(sent["username"])
        if "ok" in reply:
            world.created_users.add(sent["username"])
    elif subject == "im.router.chat.create" and "ok" in reply:
        world.created_chats.add(reply["ok"]["chat_id"])
    elif subject in STORES_EVENT and "ok" in reply and sent.get("chat_id") == world.chat_id:
        world.chat_changes += 1


GROUPS = {"auth": [s for s in REQUESTS if s.startswith("im.auth.")],
          "router": [s for s in REQUESTS if s.startswith("im.router.")],
          "history-delivery": [s for s in REQUESTS if s.startswith(("im.history.", "im.dlv."))]}


def test_every_request_subject_is_fuzzed() -> None:
    assert sorted(s for group in GROUPS.values() for s in group) == REQUESTS


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_junk_requests_get_contract_errors_in_time(stack, loop, world, group) -> None:
    @EXAMPLES
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        subject = data.draw(st.sampled_from(GROUPS[group]), label="subject")
        payload = data.draw(payloads(world, subject), label="payload")
        reply = loop.run(_ask, world.bus, subject, payload)
        check_reply(subject, payload, reply)
        record(world, subject, payload, reply)
        assert not [n for n, p in stack.processes.items() if p.poll() is not None]

    run()
    assert_alive(stack)


# Core subjects nobody answers: each gets junk and payloads that fit its schema.
EVENTS = {"im.gw.all.deliver": "gw_deliver", "im.gw.announce": "gw.announce",
          "im.evt.presence.{user}": "evt.presence", "im.evt.session.revoked.{user}": "evt.session.revoked",
          "im.evt.push.{user}": "evt.push"}


def event_payloads(world: World, schema: str) -> st.SearchStrategy[bytes]:
    real = {"user_id": [world.a.user_id, world.b.user_id], "chat_id": [world.chat_id], "device_id": ["d1"]}
    fitting = from_schema(contracts.load_json(f"schemas/nats/{schema}.json"), real)
    as_bytes = [strategy.map(lambda v: encode(v).encode()) for strategy in (fitting, fitting, JSON)]
    return st.one_of(*as_bytes, BROKEN_JSON.map(str.encode), st.binary(max_size=200))


async def _publish(bus: Bus, subject: str, data: bytes) -> None:
    await bus.publish(subject, data)


async def _live_exchange(api: str, ws_url: str) -> None:
    """Two new users: one's message reaches the other's open socket. A schema-fitting
    announcement names a gateway that does not exist (until it expires, logins may send
    users there), so the sockets go to the stack's gateway itself; a junk one names none."""
    async with httpx.AsyncClient(base_url=api) as http:
        x, y = [await register_and_login(http, f"fzl_{n}_{secrets.token_hex(4)}") for n in "xy"]
        assert all(re.fullmatch(r"wss?://\S+", u.ws_url) for u in (x, y)), (x.ws_url, y.ws_url)
        chat = await http.post("/api/v1/chats", headers=x.auth, json={"type": "direct", "members": [y.user_id]})
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()["chat_id"]
        async with open_websocket_url(f"{ws_url}?token={x.access_token}") as wx, \
                open_websocket_url(f"{ws_url}?token={y.access_token}") as wy:
            await next_frame(wy, "sync_done", timeout=15)
            await send(wx, {"type": "send_message", "id": "live", "chat_id": chat_id, "content": "still here"})
            await next_frame(wx, "message_ack")
            got = await next_frame(wy, "new_message", timeout=15)
            assert got["content"] == "still here", got


def test_junk_events_leave_the_product_working(stack, loop, world) -> None:
    before = {s: len(logged_errors(stack, s)) for s in ("gateway", "router")}

    @EXAMPLES
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        pattern = data.draw(st.sampled_from(sorted(EVENTS)), label="subject")
        subject = pattern.format(user=data.draw(st.sampled_from([world.a.user_id, "nouser"])))
        loop.run(_publish, world.bus, subject, data.draw(event_payloads(world, EVENTS[pattern])))

    run()
    loop.run(_live_exchange, stack.api, stack.ws_url)
    assert_alive(stack)
    assert {s: len(logged_errors(stack, s)) for s in before} == before, \
        [line[:300] for s in before for line in logged_errors(stack, s)]


def stream_junk(world: World) -> st.SearchStrategy[tuple[bytes, bool]]:
    """(payload, readable): junk, and events that fit msg_event.json, for chats that do not
    exist (one reuses a stored message's id). Unreadable ones are not JSON objects."""
    junk_chat = f"fzjunk{secrets.token_hex(3)}"
    real = {"chat_id": [junk_chat], "message_id": [world.message_id], "seq": [1, 2],
            "sender_id": [world.a.user_id], "target_seq": [1]}
    fitting = from_schema(contracts.load_json("schemas/nats/msg_event.json"), real)
    return st.one_of(fitting.map(lambda v: (encode(v).encode(), True)),
                     fitting.map(lambda v: (encode(v).encode(), True)),
                     JSON.map(lambda v: (encode(v).encode(), isinstance(v, dict))),
                     BROKEN_JSON.map(lambda t: (t.encode(), _is_object(t.encode()))),
                     st.binary(max_size=200).map(lambda b: (b, _is_object(b))))


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


async def _js_publish(bus: Bus, data: bytes) -> None:
    await js_publish(bus, f"im.msg.fzjunk{secrets.token_hex(3)}", data, msg_id=secrets.token_hex(8))


def consumers(nats: Any) -> dict[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{nats.monitor_port}/jsz?accounts=true&streams=true&consumers=true"
    with urllib.request.urlopen(url, timeout=5) as answer:
        jsz = orjson.loads(answer.read())
    return {c["name"]: c for account in jsz["account_details"] for stream in account.get("stream_detail", [])
            if stream["name"] == STREAM for c in stream.get("consumer_detail", [])}


async def _send_real(world: World, ws_url: str) -> int:
    async with open_websocket_url(f"{ws_url}?token={world.a.access_token}") as ws:
        await send(ws, {"type": "send_message", "id": f"after-junk-{secrets.token_hex(3)}",
                        "chat_id": world.chat_id, "content": "after the junk"})
        return int((await next_frame(ws, "message_ack"))["seq"])


def test_junk_on_the_stream_is_terminated_and_consumers_go_on(stack, stack_nats, loop, world,
                                                             mysql_config) -> None:
    unreadable = 0
    marks = {"history": "history.poison_event", "delivery_retry": "dlv.unreadable_event"}
    logged = {s: sum(m in line for line in logged_errors(stack, s)) for s, m in marks.items()}

    @EXAMPLES
    @given(junk=stream_junk(world))
    def run(junk: tuple[bytes, bool]) -> None:
        nonlocal unreadable
        loop.run(_js_publish, world.bus, junk[0])
        unreadable += not junk[1]

    run()
    seq = loop.run(_send_real, world, stack.ws_url)
    stored = loop.run(wait_stored, mysql_config, {world.chat_id: seq})
    assert seq in {e.seq for e in stored}, "history stalled behind the junk"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = consumers(stack_nats)
        projected = query(mysql_config, "SELECT 1 FROM dlv_events WHERE chat_id = %s AND seq = %s",
                          world.chat_id, seq)
        if projected and all(c["num_pending"] == 0 and c["num_ack_pending"] == 0 for c in state.values()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"a consumer stalled: {state}, projected={projected}")
    for service, mark in marks.items():  # each unreadable message logged once by each consumer
        now = sum(mark in line for line in logged_errors(stack, service))
        assert now - logged[service] >= unreadable > 0, (service, now - logged[service], unreadable)
    assert_alive(stack)


@pytest.mark.parametrize("field", ["content", "metadata"])
def test_a_value_too_deep_to_read_back_is_refused_not_stored(loop, world, field) -> None:
    """Found by this module: the router stored a message whose metadata nested 252 levels,
    and from then on the chat's history answered 500 (its page nests deeper than the bus
    encoder's 255 levels)."""
    payload = {**world.valid("im.router.send"), "client_msg_id": f"deep-{field}",
               "content_type": "location", "content": {"lat": 1, "lon": 2}}
    payload[field] = {**payload.get(field, {}), "m": nested("x", 252)}  # location allows more keys
    reply = loop.run(_ask, world.bus, "im.router.send", encode(payload).encode())
    assert reply.get("error", {}).get("code") == 4000, reply
    assert loop.run(_whole_history_readable, world, world.api) >= 2


def test_only_what_ok_replies_announced_is_stored(stack, loop, world, mysql_config) -> None:
    """After the request fuzzing (this module's tests run in file order)."""
    users = sorted(world.tried_users)
    if users:
        found = {row[0] for row in query(mysql_config, "SELECT username FROM users WHERE username IN ("
                                         + ", ".join(["%s"] * len(users)) + ")", *users)}
        seeded = {u.username for u in (world.a, world.b, world.c, world.spare)}
        assert found - seeded == world.created_users, f"stored without an ok reply: {found - world.created_users}"
    ours = [u.user_id for u in (world.a, world.b, world.c, world.spare)]
    chats = {row[0] for row in query(mysql_config, "SELECT chat_id FROM router_conversations WHERE created_by"
                                     " IN (%s, %s, %s, %s)", *ours)}
    assert chats == world.created_chats | {world.chat_id, world.other_chat}
    last = loop.run(_last_seq, world, stack.api)
    stored = loop.run(wait_stored, mysql_config, {world.chat_id: last})
    assert [e.seq for e in stored] == list(range(1, last + 1))
    assert not [e for e in stored if e.event == "void"], stored
    # Seeded: created, the seed message; the stream test added one message.
    assert last - 3 <= world.chat_changes, (last, world.chat_changes)
    assert loop.run(_whole_history_readable, world, stack.api) == last


async def _last_seq(world: World, api: str) -> int:
    async with httpx.AsyncClient(base_url=api) as http:
        for user in (world.a, world.b, world.c):
            answer = await http.get(f"/api/v1/chats/{world.chat_id}", headers=user.auth)
            if answer.status_code == 200:
                return int(answer.json()["last_seq"])
    raise AssertionError("nobody is left in the seeded chat")


async def _whole_history_readable(world: World, api: str) -> int:
    """The seeded chat pages over HTTP from seq 1 on; the highest seq read."""
    after, last = 0, 0
    async with httpx.AsyncClient(base_url=api) as http:
        for user in (world.a, world.b, world.c):
            while True:
                page = await http.get(f"/api/v1/chats/{world.chat_id}/messages?after_seq={after}&limit=200",
                                      headers=user.auth)
                if page.status_code == 403:
                    break
                assert page.status_code == 200, page.text[:300]
                events = page.json()["events"]
                if not events:
                    return last
                after = last = events[-1]["seq"]
    raise AssertionError("nobody is left in the seeded chat")
