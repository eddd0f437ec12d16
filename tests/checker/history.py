"""Indexes over the stored events and the acked sends that the checks look things up in."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .model import Device, StoredEvent
from .recorder import EVENT_OF, Acked, Run, Sent

# The fields a delivered event must share with what was stored (or sent) for its seq.
COMPARED = {
    "message": ("message_id", "sender_id", "client_msg_id", "content_type", "content", "metadata"),
    "message_updated": ("kind", "target_seq", "content"),
    "chat_updated": ("kind",),
    "void": (),
}


def event_kind(item: Mapping[str, Any]) -> str | None:
    """Stored bodies name their kind in ``event``, frames and page items in ``type``."""
    return item.get("event") or EVENT_OF.get(str(item.get("type")))


def same(a: Any, b: Any) -> bool:
    """JSON-equal with object key order kept, as the contract promises for contents."""
    return json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)


def differences(got: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """The compared fields in which ``got`` differs from ``reference`` ("event" if the kinds do)."""
    kind = event_kind(reference)
    if event_kind(got) != kind:
        return ["event"]
    fields = [f for f in COMPARED.get(str(kind), ()) if f in reference]
    return [f for f in fields if not same(got.get(f), reference[f])]


class History:
    """The stored events of the checked chats: the first event per (chat, seq) in ``at``,
    any further one for the same (chat, seq) in ``extra`` (a duplicate in itself)."""

    def __init__(self, stored: Iterable[StoredEvent]) -> None:
        self._required: dict[str, dict[int, frozenset[str]]] = {}
        self.at: dict[tuple[str, int], StoredEvent] = {}
        self.extra: list[StoredEvent] = []
        self.seqs: dict[str, list[int]] = defaultdict(list)
        for event in sorted(stored, key=lambda e: (e.chat_id, e.seq)):
            if (event.chat_id, event.seq) in self.at:
                self.extra.append(event)
            else:
                self.at[(event.chat_id, event.seq)] = event
                self.seqs[event.chat_id].append(event.seq)

    def messages(self) -> list[StoredEvent]:
        return [e for e in [*self.at.values(), *self.extra] if e.event == "message"]

    def chat_events(self, chat_id: str) -> list[StoredEvent]:
        return [self.at[(chat_id, seq)] for seq in self.seqs.get(chat_id, [])]

    def required(self, chat_id: str, fixed: Collection[str] | None) -> dict[int, frozenset[str]]:
        """Per stored seq, the users whose devices must hold that event.

        A user is required at a seq when a member both before and after that event, so
        neither a joining nor a leaving user is held to the membership change itself; the
        members a ``created`` event names are required to get it.
        """
        if chat_id not in self._required:
            self._required[chat_id] = self._derive_required(chat_id, fixed)
        return self._required[chat_id]

    def _derive_required(self, chat_id: str, fixed: Collection[str] | None) -> dict[int, frozenset[str]]:
        events = self.chat_events(chat_id)
        if fixed is not None:
            return {e.seq: frozenset(fixed) for e in events}
        members: frozenset[str] = frozenset()
        required = {}
        for event in events:
            after = _members_after(members, event)
            created = event.event == "chat_updated" and event.body.get("kind") == "created"
            required[event.seq] = after if created else members & after
            members = after
        return required


def _members_after(members: frozenset[str], event: StoredEvent) -> frozenset[str]:
    if event.event != "chat_updated":
        return members
    kind, details = event.body.get("kind"), event.body.get("details") or {}
    named = frozenset(m["user_id"] for m in details.get("members") or [])
    if kind == "created":
        return named
    if kind == "member_added":
        return members | named
    if kind == "member_removed":
        return members - frozenset(details.get("user_ids") or [])
    return members


class Sends:
    """The sends, their acks, and what an acked message should look like."""

    def __init__(self, run: Run, chats: Collection[str]) -> None:
        self.frames: dict[tuple[Device, str, str], Sent] = {}
        for sent in run.sent:
            self.frames.setdefault((sent.device, sent.chat_id, sent.id), sent)
        self.acks = [a for a in run.acked if a.chat_id in chats]
        self.first_ack: dict[tuple[str, int], Acked] = {}
        self.held: dict[tuple[Device, str], set[int]] = defaultdict(set)
        self.by_chat: dict[str, set[int]] = defaultdict(set)
        for ack in self.acks:
            self.first_ack.setdefault((ack.chat_id, ack.seq), ack)
            self.held[(ack.device, ack.chat_id)].add(ack.seq)
            self.by_chat[ack.chat_id].add(ack.seq)

    def acked_seqs(self, chat_id: str) -> set[int]:
        return self.by_chat.get(chat_id, set())

    def messages(self) -> list[Acked]:
        """One ack per acked message (a resent id answers with the same message)."""
        unique: dict[str, Acked] = {}
        for ack in self.acks:
            unique.setdefault(ack.message_id, ack)
        return list(unique.values())

    def reference(self, ack: Acked) -> dict[str, Any]:
        """The message event the send acked by ``ack`` should have become."""
        expected: dict[str, Any] = {"event": "message", "message_id": ack.message_id,
                                    "sender_id": ack.device.user_id, "client_msg_id": ack.id}
        sent = self.frames.get((ack.device, ack.chat_id, ack.id))
        if sent is not None:
            expected["content_type"] = sent.frame.get("content_type", "text")
            expected["content"] = sent.frame.get("content")
            if "metadata" in sent.frame:
                expected["metadata"] = sent.frame["metadata"]
        return expected


def reference_at(history: History, sends: Sends, chat_id: str, seq: int) -> Mapping[str, Any] | None:
    """What a device should get at (chat, seq): the stored event, else the acked send."""
    stored = history.at.get((chat_id, seq))
    if stored is not None:
        return stored.body
    ack = sends.first_ack.get((chat_id, seq))
    return sends.reference(ack) if ack is not None else None
