"""WebSocket frames: arbitrary JSON, mutated client frames, broken JSON and raw bytes, sent
by an authenticated device over one socket.

Each fuzzed frame is followed by a real ``send_message`` (the fence): the gateway handles
a socket's frames one at a time here, so everything the fuzzed frame caused arrives before
the fence's ``message_ack``, which also proves the socket still works. A frame the contract
rejects as such (cap, JSON, object, type, schema of ``proto/schemas/ws/client/``) must get
exactly one ``error`` with that code, echoing the frame's ``id``; any other frame may get an
error with a contract code, never 5000 or 5003. A text frame that is not UTF-8 breaks the
WebSocket protocol itself: the server ends the TCP connection (trio-websocket sends no close
frame; the client sees 1006) and the device reconnects. Afterwards MySQL holds exactly the
acked messages, and every service still runs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import httpx
import orjson
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from wsproto.events import CloseConnection, Message, Ping, TextMessage

from libs import contracts
from tests.checker import wait_stored
from tests.e2e.client import User, register_and_login, validate_frame
from tests.e2e.rawws import RawSocket, open_raw

from .conftest import CODES, EXAMPLES, assert_alive, assert_error_body, query
from .strategies import BROKEN_JSON, DEEP, HOSTILE, JSON, encode, mutated

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
MAX_FRAME = 65536  # the gateway's default cap (NJ_GATEWAY_MAX_FRAME_BYTES)
MAX_DEPTH = 64  # deepest nesting of a frame (proto/README.md)
CLIENT_TYPES = sorted(p.stem for p in (contracts.proto_dir() / "schemas/ws/client").glob("*.json"))


def rejection(data: str | bytes) -> int | None:
    """The code the contract gives this frame before any business logic, or None if it passes."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_FRAME:
        return 4013
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 4000
    if not isinstance(frame, dict) or depth(frame) > MAX_DEPTH:
        return 4000
    if frame.get("type") not in CLIENT_TYPES:
        return 4002
    try:
        contracts.validator(f"schemas/ws/client/{frame['type']}.json")(frame)
    except fastjsonschema.JsonSchemaValueException:
        return 4000
    return None


def depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(depth, children), default=0)


def frame_id(data: str | bytes) -> str | None:
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    value = frame.get("id") if isinstance(frame, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def text_frame(payload: bytes) -> bytes:
    """A masked, final text frame carrying ``payload`` as is (UTF-8 or not)."""
    size = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else
                            bytes([0x80 | 126]) + size.to_bytes(2, "big") if size < 65536 else
                            bytes([0x80 | 127]) + size.to_bytes(8, "big"))
    mask = secrets.token_bytes(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


NO_CLOSE_FRAME = -1  # the server ended the TCP connection without a close frame


@dataclass
class Outcome:
    frames: list[dict[str, Any]]
    closed: int | None = None  # the close code, when the server closed the socket

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "error"]


@dataclass
class Device:
    """One authenticated socket; ``exchange`` sends something, then the fence."""

    user: User
    chat_id: str
    raw: RawSocket | None = None
    acked: dict[str, int] = field(default_factory=dict)  # client message id -> seq
    fences: int = 0

    async def connect(self) -> None:
        self.raw = await open_raw(self.user.ws_url, self.user.access_token)

    async def exchange(self, payload: str | bytes, how: str) -> Outcome:
        assert self.raw is not None
        ws = self.raw.ws
        if how == "text":
            data = ws.send(Message(data=payload))
        elif how == "binary":
            data = ws.send(Message(data=payload if isinstance(payload, bytes) else payload.encode()))
        else:
            data = text_frame(payload if isinstance(payload, bytes) else payload.encode())
        self.fences += 1
        fence = {"type": "send_message", "id": f"fence-{self.fences}", "chat_id": self.chat_id,
                 "content": f"fence {self.fences}"}
        try:
            await self.raw.stream.send_all(data)
            await self.raw.stream.send_all(ws.send(Message(data=orjson.dumps(fence).decode())))
        except trio.BrokenResourceError:
            pass  # the server closed already: reading says how
        return await self._until_ack(fence["id"])

    async def _until_ack(self, fence_id: str) -> Outcome:
        assert self.raw is not None
        outcome = Outcome([])
        with trio.fail_after(30):
            while True:
                try:
                    event = await self.raw.next_event(30)
                except (EOFError, trio.BrokenResourceError):
                    event = CloseConnection(code=NO_CLOSE_FRAME)
                if isinstance(event, Ping):
                    await self.raw.answer(event)
                elif isinstance(event, CloseConnection):
                    outcome.closed = event.code
                    await self.reconnect()
                    return outcome
                elif isinstance(event, TextMessage):
                    frame = validate_frame(orjson.loads(event.data))
                    if frame["type"] == "message_ack":
                        self.acked[frame["id"]] = frame["seq"]
                        if frame["id"] == fence_id:
                            return outcome
                    outcome.frames.append(frame)
                else:
                    raise AssertionError(f"unexpected event from the server: {event!r}")

    async def reconnect(self) -> None:
        assert self.raw is not None
        await self.raw.aclose()
        await self.connect()


@dataclass
class World:
    device: Device
    other_chat: str  # a chat the device's user is not a member of
    token: str
    other_token: str  # another user's


async def _world(stack: Any) -> World:
    async with httpx.AsyncClient(base_url=stack.api) as http:
        a, b, c = [await register_and_login(http, f"fz_{n}_{secrets.token_hex(4)}") for n in "abc"]
        chats = []
        for owner, member in ((a, b), (b, c)):
            answer = await http.post("/api/v1/chats", headers=owner.auth, json={
                "type": "group", "name": "fuzz", "members": [member.user_id]})
            assert answer.status_code == 201, answer.text
            chats.append(answer.json()["chat_id"])
    device = Device(a, chats[0])
    await device.connect()
    return World(device, chats[1], a.access_token, b.access_token)


@pytest.fixture(scope="module")
def world(stack, loop) -> World:
    return loop.run(_world, stack)


def valid_frames(world: World) -> list[dict[str, Any]]:
    chat = world.device.chat_id
    return [
        {"type": "send_message", "id": "v1", "chat_id": chat, "content": "hello"},
        {"type": "send_message", "id": "v2", "chat_id": chat, "content_type": "location",
         "content_version": 1, "content": {"lat": 1.5, "lon": 2.5}, "metadata": {"k": "v"}},
        {"type": "ack", "chat_id": chat, "seq": 1}, {"type": "read", "chat_id": chat, "seq": 1},
        {"type": "start_typing", "chat_id": chat}, {"type": "stop_typing", "chat_id": chat},
        {"type": "sync", "chat_id": chat, "after_seq": 0, "id": "s1"}, {"type": "ping", "id": "p1"},
        {"type": "auth", "token": world.token},
    ]


def known_fields(kind: str) -> list[str]:
    return sorted(contracts.load_json(f"schemas/ws/client/{kind}.json")["properties"])


def malformed(world: World) -> st.SearchStrategy[str]:
    """Mostly frames the contract refuses: mutated, typed junk, any JSON, broken JSON."""
    ids = st.sampled_from([world.device.chat_id, world.other_chat, "nochat", "A" * 64])
    bases = st.builds(lambda frame, chat: {**frame, **({"chat_id": chat} if "chat_id" in frame else {})},
                      st.sampled_from(valid_frames(world)), ids)
    mutants = bases.flatmap(lambda frame: mutated(frame, known_fields(frame["type"])))
    typed = st.builds(lambda kind, value: {**value, "type": kind} if isinstance(value, dict) else value,
                      st.sampled_from([*CLIENT_TYPES, "nope"]), JSON)
    return st.one_of(mutants.map(encode), mutants.map(encode), typed.map(encode), JSON.map(encode),
                     BROKEN_JSON)


def in_schema(world: World, other_token: str) -> st.SearchStrategy[str]:
    """Frames that pass their schema with hostile values: they reach the services."""
    chat = st.one_of(st.sampled_from([world.device.chat_id, world.other_chat]),
                     st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
    seq = st.one_of(st.integers(1, 2**53 - 1), st.sampled_from([1, 2, 2**31, 2**53 - 1]))
    values = {
        "id": st.text(min_size=1, max_size=128), "chat_id": chat, "seq": seq,
        "after_seq": st.one_of(st.just(0), seq), "content": st.one_of(HOSTILE, DEEP, st.text(max_size=300)),
        "content_type": st.one_of(st.sampled_from(["text", "image", "file", "location", "system"]),
                                  st.from_regex(r"[a-z][a-z0-9_.-]{0,63}", fullmatch=True)),
        "content_version": st.integers(1, 2**31 - 1),
        "metadata": st.one_of(st.dictionaries(st.text(max_size=8), JSON, max_size=4), DEEP.map(lambda v: {"d": v}),
                              st.builds(lambda n: {"pad": "m" * n}, st.integers(3000, 6000))),
        "token": st.one_of(st.text(min_size=1, max_size=200), st.sampled_from([world.token, other_token])),
    }

    @st.composite
    def frame(draw: st.DrawFn) -> str:
        base = draw(st.sampled_from(valid_frames(world)))
        optional = [k for k in known_fields(base["type"]) if k not in base]
        keys = [*base, *draw(st.lists(st.sampled_from(optional), unique=True))] if optional else list(base)
        out = {k: base[k] if k == "type" or draw(st.booleans()) and k in base else draw(values[k])
               for k in keys}
        return encode(out)

    return frame()


def check_answer(sent: str | bytes, outcome: Outcome) -> None:
    assert outcome.closed is None, f"socket closed ({outcome.closed}) after {sent[:300]!r}"
    errors = outcome.errors
    expected = rejection(sent)
    if expected is not None:
        assert len(errors) == 1, f"{sent[:300]!r} got {outcome.frames}"
        assert assert_error_body(errors[0], {expected}) == expected
        assert errors[0].get("id") == frame_id(sent), (sent[:300], errors[0])
        return
    assert len(errors) <= 1, f"{sent[:300]!r} got {outcome.frames}"
    for error in errors:
        assert_error_body(error, CODES)
    frame = orjson.loads(sent)
    if frame["type"] == "send_message":  # answered: acked, or refused with its id
        answers = [f for f in outcome.frames if f["type"] in ("message_ack", "error")]
        assert [f.get("id") for f in answers] == [frame["id"]], (sent[:300], answers)


def test_malformed_frames_get_contract_errors_and_the_socket_keeps_working(stack, loop, world) -> None:
    @EXAMPLES
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        text = data.draw(malformed(world), label="frame")
        how = data.draw(st.sampled_from(["text", "text", "binary"]), label="how")
        outcome = loop.run(world.device.exchange, text, how)
        check_answer(text, outcome)
        assert not [n for n, p in stack.processes.items() if p.poll() is not None]

    run()
    assert_alive(stack)


def test_frames_in_schema_with_hostile_values_get_answers_not_internal_errors(stack, loop, world) -> None:
    @EXAMPLES
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        text = data.draw(in_schema(world, world.other_token), label="frame")
        outcome = loop.run(world.device.exchange, text, "text")
        check_answer(text, outcome)
        assert not [n for n, p in stack.processes.items() if p.poll() is not None]

    run()
    assert_alive(stack)


def test_random_bytes_get_4000_or_end_the_connection_when_not_utf8(stack, loop, world) -> None:
    @EXAMPLES
    @given(payload=st.binary(max_size=300), how=st.sampled_from(["binary", "raw-text"]))
    def run(payload: bytes, how: str) -> None:
        outcome = loop.run(world.device.exchange, payload, how)
        try:
            payload.decode()
        except UnicodeDecodeError:
            if how == "raw-text":
                assert outcome.closed in (1007, NO_CLOSE_FRAME), outcome
                return
        check_answer(payload, outcome)

    run()
    assert_alive(stack)


def test_a_frame_beyond_four_times_the_cap_closes_with_1009(stack, loop, world) -> None:
    outcome = loop.run(world.device.exchange, "x" * (4 * MAX_FRAME + 1), "text")
    assert outcome.closed == 1009, outcome
    after = loop.run(world.device.exchange, '{"type":"ping","id":"after"}', "text")
    # The catch-up of the new socket comes too: no errors, and the pong.
    assert after.closed is None and not after.errors and {"type": "pong", "id": "after"} in after.frames


def test_mysql_holds_exactly_the_acked_messages(stack, loop, world, mysql_config) -> None:
    device = world.device
    assert device.acked, "nothing was acked"
    loop.run(wait_stored, mysql_config, {device.chat_id: max(device.acked.values())})
    rows = query(mysql_config, "SELECT seq, event, client_msg_id FROM history_messages WHERE chat_id = %s",
                 device.chat_id)
    expected = {(1, "chat_updated", None)} | {(seq, "message", cid) for cid, seq in device.acked.items()}
    assert set(rows) == expected and len(rows) == len(expected)
    other = query(mysql_config, "SELECT seq, event FROM history_messages WHERE chat_id = %s", world.other_chat)
    assert other == [(1, "chat_updated")]
    assert_alive(stack)

