"""Valid runs for the history checker: what a correct system would have stored and delivered.

Each chat starts with ``created`` (seq 1), then messages (sent, acked, stored), failed sends
(error answer, a ``void`` stored at the allocated seq), edits, voids and at most one
member joining. Every device gets every event of its chats (while its user is a member) in
seq order, chats interleaved at random, some events delivered again later. A sender may or
may not get its own message back: its ack already holds the seq.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from libs.events import to_frame
from tests.checker import Acked, Device, Expectations, Failed, Received, Run, Sent, StoredEvent

KINDS = ("message", "message", "message", "failed", "void", "edit", "join")


@dataclass
class World:
    """A run and its stored events as plain lists, so a test can break one thing in it."""

    devices: list[Device]
    stored: list[StoredEvent] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def run(self) -> Run:
        return Run(tuple(self.sent), tuple(self.acked), tuple(self.failed), tuple(self.received))

    def expectations(self) -> Expectations:
        return Expectations(complete=self.devices)

    def store(self, body: dict[str, Any]) -> None:
        self.stored.append(StoredEvent.from_body(body))


@dataclass
class Chat:
    chat_id: str
    members: list[str]
    outsiders: list[str]
    seq: int = 1
    # per seq: the users that get the event, and the device that sent it (if any)
    audience: dict[int, tuple[frozenset[str], Device | None]] = field(default_factory=dict)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    users = [f"u{i}" for i in range(draw(st.integers(2, 4)))]
    devices = [Device(u, f"d{j}") for u in users for j in range(draw(st.integers(1, 2)))]
    world = World(devices)
    deliveries: dict[Device, list[list[Received]]] = {d: [] for d in devices}
    for n in range(draw(st.integers(1, 3))):
        chat = _open_chat(draw, world, f"c{n}", users)
        for _ in range(draw(st.integers(1, 10))):
            chat.seq += 1
            _add_event(draw, world, chat, draw(st.sampled_from(KINDS)))
        for device in devices:
            deliveries[device].append(_chat_deliveries(draw, world, chat, device))
    rnd = draw(st.randoms(use_true_random=False))
    for device in devices:
        world.received.extend(_with_redeliveries(rnd, _interleave(rnd, deliveries[device])))
    return world


def _open_chat(draw: st.DrawFn, world: World, chat_id: str, users: list[str]) -> Chat:
    members = draw(st.lists(st.sampled_from(users), min_size=2, unique=True))
    chat = Chat(chat_id, members, [u for u in users if u not in members])
    world.store({"event": "chat_updated", "chat_id": chat_id, "seq": 1, "ts": 1, "kind": "created",
                 "actor_id": members[0], "details": {"type": "group", "name": None, "members": [
                     {"user_id": u, "role": "member"} for u in members]}})
    chat.audience[1] = (frozenset(members), None)
    return chat


def _add_event(draw: st.DrawFn, world: World, chat: Chat, kind: str) -> None:
    base = {"chat_id": chat.chat_id, "seq": chat.seq, "ts": chat.seq}
    sender = draw(st.sampled_from([d for d in world.devices if d.user_id in chat.members]))
    if kind == "join" and chat.outsiders:
        joiner = chat.outsiders.pop()
        chat.members.append(joiner)
        world.store({**base, "event": "chat_updated", "kind": "member_added", "actor_id": sender.user_id,
                     "details": {"members": [{"user_id": joiner, "role": "member"}]}})
    elif kind == "message":
        _send(draw, world, chat, sender, base)
        return
    elif kind == "edit":
        world.store({**base, "event": "message_updated", "kind": "edit", "target_seq": chat.seq - 1,
                     "content": f"edited {chat.seq}", "actor_id": sender.user_id})
    else:  # a failed send or a bare void: the seq becomes a void
        if kind == "failed":
            frame = {"type": "send_message", "id": f"f{chat.seq}", "chat_id": chat.chat_id, "content": "x"}
            world.sent.append(Sent(sender, frame["id"], chat.chat_id, frame))
            world.failed.append(Failed(sender, frame["id"], {"type": "error", "code": 5003}))
        world.store({**base, "event": "void"})
    chat.audience[chat.seq] = (frozenset(chat.members), None)


def _send(draw: st.DrawFn, world: World, chat: Chat, sender: Device, base: dict[str, Any]) -> None:
    content = draw(st.one_of(st.text(max_size=6), st.fixed_dictionaries({"b": st.integers(), "a": st.text(max_size=3)})))
    client_id = f"m{chat.seq}"
    frame: dict[str, Any] = {"type": "send_message", "id": client_id, "chat_id": chat.chat_id, "content": content}
    if draw(st.booleans()):
        frame["metadata"] = {"k": chat.seq}
    world.store({**base, "event": "message", "message_id": f"{chat.chat_id}-{chat.seq}",
                 "sender_id": sender.user_id, "sender_device_id": sender.device_id,
                 "content_type": "text", "content_version": 1, "content": content,
                 "metadata": frame.get("metadata"), "client_msg_id": client_id})
    for _ in range(draw(st.integers(1, 2))):  # a resend of the same id gets the same ack
        world.sent.append(Sent(sender, client_id, chat.chat_id, frame))
        world.acked.append(Acked(sender, client_id, chat.chat_id, f"{chat.chat_id}-{chat.seq}", chat.seq))
    chat.audience[chat.seq] = (frozenset(chat.members), sender)


def _chat_deliveries(draw: st.DrawFn, world: World, chat: Chat, device: Device) -> list[Received]:
    bodies = {e.seq: e.body for e in world.stored if e.chat_id == chat.chat_id}
    out = []
    for seq, (users, sender) in sorted(chat.audience.items()):
        if device.user_id in users and (device != sender or draw(st.booleans())):
            frame = to_frame(dict(bodies[seq]))
            out.append(Received(device, chat.chat_id, seq, str(bodies[seq]["event"]), frame))
    return out


def _interleave(rnd: random.Random, queues: list[list[Received]]) -> list[Received]:
    queues = [list(q) for q in queues if q]
    merged = []
    while queues:
        queue = rnd.choice(queues)
        merged.append(queue.pop(0))
        queues = [q for q in queues if q]
    return merged


def _with_redeliveries(rnd: random.Random, items: list[Received]) -> list[Received]:
    """Copies of some events again, each somewhere after the event's first arrival."""
    items = list(items)
    for _ in range(rnd.randint(0, 3) if items else 0):
        first = rnd.randrange(len(items))
        items.insert(rnd.randint(first + 1, len(items)), items[first])
    return items
