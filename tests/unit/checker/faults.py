"""One fault each, injected into a valid ``World``; each must surface in exactly one category.

An injector may call ``hypothesis.assume`` when the world has nothing it can break.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from hypothesis import assume

from libs.events import to_frame
from tests.checker import DUPLICATED, GAPS, LOST, MISMATCH, OUT_OF_ORDER, UNANSWERED, Received, Sent

from .runs import World

MEMBERSHIP_CHANGES = ("member_added", "member_removed")


def drop_delivery(world: World, rnd: random.Random) -> None:
    """Every copy of one event a device should have (and did not send itself) vanishes."""
    held_by_ack = {(a.device, a.chat_id, a.seq) for a in world.acked}
    candidates = [r for r in world.received if (r.device, r.chat_id, r.seq) not in held_by_ack
                  and r.frame.get("kind") not in MEMBERSHIP_CHANGES]
    assume(candidates)
    gone = rnd.choice(candidates)
    world.received = [r for r in world.received
                      if (r.device, r.chat_id, r.seq) != (gone.device, gone.chat_id, gone.seq)]


def swap_deliveries(world: World, rnd: random.Random) -> None:
    """Two consecutive first arrivals of one chat on one device trade places."""
    pairs = _consecutive_first_arrivals(world.received)
    assume(pairs)
    i, j = rnd.choice(pairs)
    world.received[i], world.received[j] = world.received[j], world.received[i]


def _consecutive_first_arrivals(items: list[Received]) -> list[tuple[int, int]]:
    last: dict[tuple, int] = {}
    seen: set[tuple] = set()
    pairs = []
    for index, item in enumerate(items):
        key = (item.device, item.chat_id, item.seq)
        if key in seen:
            continue
        seen.add(key)
        if (item.device, item.chat_id) in last:
            pairs.append((last[(item.device, item.chat_id)], index))
        last[(item.device, item.chat_id)] = index
    return pairs


def duplicate_stored_message(world: World, rnd: random.Random) -> None:
    """One send becomes a second message (new id, or the same id) at the chat's next seq,
    faithfully delivered to every member device."""
    messages = [e for e in world.stored if e.event == "message"]
    assume(messages)
    original = rnd.choice(messages)
    seq = max(e.seq for e in world.stored if e.chat_id == original.chat_id) + 1
    message_id = original.message_id if rnd.random() < 0.5 else f"{original.message_id}-again"
    world.store({**original.body, "seq": seq, "message_id": message_id})
    members = _members_at_end(world, original.chat_id)
    frame = to_frame(dict(world.stored[-1].body))
    world.received.extend(Received(d, original.chat_id, seq, "message", frame)
                          for d in world.devices if d.user_id in members)


def _members_at_end(world: World, chat_id: str) -> set[str]:
    members: set[str] = set()
    for event in sorted((e for e in world.stored if e.chat_id == chat_id), key=lambda e: e.seq):
        details = event.body.get("details") or {}
        members |= {m["user_id"] for m in details.get("members") or []}
    return members


def drop_acked_row(world: World, rnd: random.Random) -> None:
    """MySQL lost an acked message (everyone still received it)."""
    acked = {(a.chat_id, a.seq) for a in world.acked}
    rows = [e for e in world.stored if (e.chat_id, e.seq) in acked]
    assume(rows)
    world.stored.remove(rnd.choice(rows))


def leave_send_unanswered(world: World, rnd: random.Random) -> None:
    """A failed send's error never comes, or a fresh send is never answered."""
    if world.failed and rnd.random() < 0.5:
        world.failed.remove(rnd.choice(world.failed))
        return
    sender = rnd.choice(world.devices)
    frame = {"type": "send_message", "id": "unanswered", "chat_id": "c0", "content": "?"}
    world.sent.append(Sent(sender, "unanswered", "c0", frame))


def alter_content(world: World, rnd: random.Random) -> None:
    """One delivered copy, or one stored message, carries other content than was sent."""
    copies = [i for i, r in enumerate(world.received) if "content" in r.frame]
    stored = [i for i, e in enumerate(world.stored) if e.event == "message"]
    assume(copies or stored)
    if copies and (not stored or rnd.random() < 0.5):
        i = rnd.choice(copies)
        item = world.received[i]
        world.received[i] = replace(item, frame={**item.frame, "content": [item.frame["content"]]})
    else:
        i = rnd.choice(stored)
        body = world.stored[i].body
        world.stored[i] = replace(world.stored[i], body={**body, "content": [body["content"]]})


def drop_unacked_row(world: World, rnd: random.Random) -> None:
    """A void or edit (nobody's ack) below the chat's last seq is not stored."""
    acked = {(a.chat_id, a.seq) for a in world.acked}
    last = {e.chat_id: max(x.seq for x in world.stored if x.chat_id == e.chat_id) for e in world.stored}
    rows = [e for e in world.stored if e.event in ("void", "message_updated")
            and (e.chat_id, e.seq) not in acked and e.seq < last[e.chat_id]]
    assume(rows)
    world.stored.remove(rnd.choice(rows))


FAULTS: dict[str, tuple[str, Callable[[World, random.Random], None]]] = {
    "drop a delivery": (LOST, drop_delivery),
    "swap two deliveries": (OUT_OF_ORDER, swap_deliveries),
    "duplicate a stored message": (DUPLICATED, duplicate_stored_message),
    "drop an acked row": (LOST, drop_acked_row),
    "leave a send unanswered": (UNANSWERED, leave_send_unanswered),
    "alter a content": (MISMATCH, alter_content),
    "drop an unacked row": (GAPS, drop_unacked_row),
}
