"""A pure in-memory model of the product, for the model-based test (test_product_model.py).

It holds what the product should: users and their devices (online or not), chats (direct
and group, their members over time) with every event at its dense per-chat ``seq``, each
device's cumulative ack cursor per chat, each user's read position per chat, the client
message ids already answered, and the receipts each device may be sent. It answers what a
real client must observe: the next ``seq`` of a chat, what an online device must hold
(``window``), a history page, a message's per-device status.

Devices are ``(user_id, device_id)``. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DeviceKey = tuple[str, str]
# (chat_id, seq, user_id, device_id or None, status) of a receipt frame
ReceiptKey = tuple[str, int, str, str | None, str]


@dataclass(frozen=True)
class Event:
    seq: int
    type: str  # "message", "message_updated" or "chat_updated"
    kind: str = ""  # chat_updated: created / member_added / member_removed; edit / recall
    message_id: str = ""
    sender_id: str = ""
    sender_device_id: str = ""
    content: str = ""
    client_msg_id: str = ""
    target_seq: int = 0  # message_updated: the message it changes


@dataclass
class Chat:
    chat_id: str
    kind: str  # "direct" or "group"
    owner: str
    members: set[str]
    events: list[Event] = field(default_factory=list)
    joined: dict[str, int] = field(default_factory=dict)  # member -> seq of its latest joining
    ever_removed: set[str] = field(default_factory=set)

    @property
    def last_seq(self) -> int:
        return len(self.events)

    def append(self, event: Event) -> None:
        assert event.seq == self.last_seq + 1
        self.events.append(event)


@dataclass
class Window:
    """What one connection of a device must hold of one chat: every seq from one of
    ``lows`` (catch-up from the cursor, or where it joined while online) to ``high``
    (None: the chat's last seq; set when the user left the chat while online)."""

    lows: frozenset[int]
    high: int | None = None


@dataclass
class Device:
    online: bool = False
    windows: dict[str, Window] = field(default_factory=dict)
    own: dict[str, set[int]] = field(default_factory=dict)  # seqs it sent on this connection


@dataclass(frozen=True)
class Page:
    seqs: list[int]
    has_more: bool


class ProductModel:
    def __init__(self) -> None:
        self.usernames: dict[str, str] = {}
        self.devices: dict[DeviceKey, Device] = {}
        self.chats: dict[str, Chat] = {}
        self.directs: dict[frozenset[str], str] = {}
        self.cursors: dict[tuple[DeviceKey, str], int] = {}
        self.reads: dict[tuple[str, str], int] = {}
        self.sent: dict[tuple[str, str], Event] = {}  # (user_id, client_msg_id) -> its message
        self.chat_of: dict[str, str] = {}  # message_id -> chat_id
        self.receipts: dict[DeviceKey, set[ReceiptKey]] = {}
        self.current: dict[tuple[str, int], tuple[str, str | None]] = {}  # edited / recalled

    # ---- people -----------------------------------------------------------------------
    def add_user(self, user_id: str, username: str) -> None:
        self.usernames[user_id] = username

    def add_device(self, key: DeviceKey) -> None:
        assert key not in self.devices
        self.devices[key] = Device()
        self.receipts[key] = set()

    def devices_of(self, user_id: str) -> list[DeviceKey]:
        return sorted(k for k in self.devices if k[0] == user_id)

    def online(self) -> list[DeviceKey]:
        return sorted(k for k, d in self.devices.items() if d.online)

    def online_of(self, user_id: str) -> list[DeviceKey]:
        return [k for k in self.devices_of(user_id) if self.devices[k].online]

    def connect(self, key: DeviceKey) -> None:
        """A new connection holds, of each chat of its user, everything above its cursor."""
        device = self.devices[key]
        device.online, device.own = True, {}
        device.windows = {chat.chat_id: Window(frozenset({self.cursor(key, chat.chat_id) + 1}))
                          for chat in self.chats_of(key[0])}

    def disconnect(self, key: DeviceKey) -> None:
        device = self.devices[key]
        device.online, device.windows, device.own = False, {}, {}

    # ---- chats ------------------------------------------------------------------------
    def chats_of(self, user_id: str) -> list[Chat]:
        return [c for c in self.chats.values() if user_id in c.members]

    def direct_between(self, a: str, b: str) -> str | None:
        return self.directs.get(frozenset((a, b)))

    def create_chat(self, chat_id: str, kind: str, owner: str, others: list[str]) -> None:
        chat = self.chats[chat_id] = Chat(chat_id, kind, owner, {owner, *others})
        if kind == "direct":
            self.directs[frozenset((owner, *others))] = chat_id
        chat.append(Event(1, "chat_updated", "created"))
        for user in chat.members:
            chat.joined[user] = 1
            self._joined(chat, user, 1)

    def add_member(self, chat_id: str, user_id: str) -> int:
        chat = self.chats[chat_id]
        chat.members.add(user_id)
        seq = chat.last_seq + 1
        chat.append(Event(seq, "chat_updated", "member_added"))
        chat.joined[user_id] = seq
        self._joined(chat, user_id, seq)
        return seq

    def _joined(self, chat: Chat, user_id: str, seq: int) -> None:
        """An online device gets a chat it joins from its joining event on, or (a look
        soon after connecting that finds the chat new) from its cursor."""
        for key in self.online_of(user_id):
            lows = {seq, self.cursor(key, chat.chat_id) + 1}
            self.devices[key].windows[chat.chat_id] = Window(frozenset(lows))

    def remove_member(self, chat_id: str, user_id: str) -> int:
        chat = self.chats[chat_id]
        chat.members.discard(user_id)
        chat.ever_removed.add(user_id)
        del chat.joined[user_id]
        self.reads.pop((user_id, chat_id), None)  # leaving forgets the read position
        seq = chat.last_seq + 1
        chat.append(Event(seq, "chat_updated", "member_removed"))
        for key in self.online_of(user_id):
            window = self.devices[key].windows.get(chat_id)
            if window is not None:  # the removed user gets its removal, then nothing
                window.high = seq
        return seq

    # ---- messages ---------------------------------------------------------------------
    def next_seq(self, chat_id: str) -> int:
        return self.chats[chat_id].last_seq + 1

    def message(self, chat_id: str, sender: DeviceKey, client_msg_id: str, message_id: str,
                content: str) -> Event:
        chat = self.chats[chat_id]
        event = Event(chat.last_seq + 1, "message", "", message_id, sender[0], sender[1], content,
                      client_msg_id)
        chat.append(event)
        self.sent[(sender[0], client_msg_id)] = event
        self.chat_of[message_id] = chat_id
        self.devices[sender].own.setdefault(chat_id, set()).add(event.seq)
        return event

    def update(self, chat_id: str, target_seq: int, kind: str, content: str | None) -> Event:
        """An edit (new content) or a recall (content gone) of the message at ``target_seq``:
        an event of its own; the message reads as its latest state from then on."""
        chat, target = self.chats[chat_id], self.event(chat_id, target_seq)
        event = Event(chat.last_seq + 1, "message_updated", kind, target.message_id, target.sender_id,
                      content=content or "", target_seq=target_seq)
        chat.append(event)
        self.current[(chat_id, target_seq)] = ("edited", content) if kind == "edit" else ("recalled", None)
        return event

    def state_of(self, chat_id: str, seq: int) -> tuple[str, str | None]:
        """A message's (state, current content)."""
        return self.current.get((chat_id, seq), ("active", self.event(chat_id, seq).content))

    def versions(self, chat_id: str, seq: int) -> list[str | None]:
        """Every content the message has had (None: recalled): a copy read from history
        after an edit shows the state of that moment."""
        updates = [e for e in self.chats[chat_id].events if e.type == "message_updated" and e.target_seq == seq]
        return [self.event(chat_id, seq).content,
                *(e.content if e.kind == "edit" else None for e in updates)]

    def event(self, chat_id: str, seq: int) -> Event:
        return self.chats[chat_id].events[seq - 1]

    # ---- acks, reads, receipts ----------------------------------------------------------
    def cursor(self, key: DeviceKey, chat_id: str) -> int:
        return self.cursors.get((key, chat_id), 0)

    def ack(self, key: DeviceKey, chat_id: str, seq: int) -> set[tuple[DeviceKey, ReceiptKey]]:
        """Move the cursor; the receipts it causes: each sender (other than the acking user)
        of a message the ack newly covers gets `delivered` with the new cursor, on each of
        its online devices."""
        old = self.cursor(key, chat_id)
        if seq <= old:
            return set()
        self.cursors[(key, chat_id)] = seq
        events = self.chats[chat_id].events[old:seq]
        senders = {e.sender_id for e in events if e.type == "message" and e.sender_id != key[0]}
        receipt = (chat_id, seq, key[0], key[1], "delivered")
        return self._expect(receipt, [d for s in senders for d in self.online_of(s)])

    def read(self, user_id: str, chat_id: str, seq: int) -> set[tuple[DeviceKey, ReceiptKey]]:
        """Move the user's read position; the other members' online devices get `read`."""
        if seq <= self.reads.get((user_id, chat_id), 0):
            return set()
        self.reads[(user_id, chat_id)] = seq
        others = sorted(self.chats[chat_id].members - {user_id})
        receipt = (chat_id, seq, user_id, None, "read")
        return self._expect(receipt, [d for u in others for d in self.online_of(u)])

    def _expect(self, receipt: ReceiptKey, targets: list[DeviceKey]
                ) -> set[tuple[DeviceKey, ReceiptKey]]:
        for key in targets:
            self.receipts[key].add(receipt)
        return {(key, receipt) for key in targets}

    # ---- what clients must observe --------------------------------------------------------
    def window(self, key: DeviceKey, chat_id: str) -> tuple[frozenset[int], int]:
        """(possible lowest seqs, highest seq) the device's connection must hold."""
        window = self.devices[key].windows[chat_id]
        high = window.high if window.high is not None else self.chats[chat_id].last_seq
        return window.lows, high

    def status(self, message_id: str) -> dict[DeviceKey, str]:
        """Recipient device -> pending / delivered / read (never failed: runs are shorter
        than the first redelivery). Recipients: the devices of the current members whose
        membership began before the message (a member who left and came back counts from
        its return), but the sending device."""
        chat = self.chats[self.chat_of[message_id]]
        event = next(e for e in chat.events if e.message_id == message_id)
        users = {u for u, since in chat.joined.items() if since < event.seq}
        recipients = [k for u in users for k in self.devices_of(u)
                      if k != (event.sender_id, event.sender_device_id)]
        return {k: self._status(k, chat.chat_id, event.seq) for k in sorted(recipients)}

    def _status(self, key: DeviceKey, chat_id: str, seq: int) -> str:
        if self.cursor(key, chat_id) < seq:
            return "pending"
        return "read" if self.reads.get((key[0], chat_id), 0) >= seq else "delivered"

    def page(self, chat_id: str, before: int | None, after: int | None, limit: int) -> Page:
        """The contract's history paging: ascending seqs, exclusive bounds; no bounds or only
        ``before``: the newest ``limit`` below; ``after`` (with or without ``before``): the
        oldest ``limit`` above. ``has_more``: more beyond the page in the direction read."""
        last = self.chats[chat_id].last_seq
        low = 1 if after is None else after + 1
        high = last if before is None else min(last, before - 1)
        span = list(range(low, high + 1))
        if after is None:
            return Page(span[-limit:], len(span) > limit)
        return Page(span[:limit], len(span) > limit)
