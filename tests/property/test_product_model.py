"""Model-based test: a hypothesis state machine drives real clients against the whole running
product and compares every observation with a pure model of it (``product_model``).

Rules: register users, log in second devices, create direct chats (a repeat is the same
chat) and groups, add and remove members, send texts (the ack's seq is the model's next
seq of the chat), resend a client message id (same message and seq, no new event), send to
a chat the user is not in (4003), edit and recall messages, take devices offline and back
(resume from the ack cursor), ack up to a seq (the cursor in delivery-retry's table becomes
the model's; the senders' online devices get `delivered` receipts), read up to a seq (the
other members' devices get `read`), page history, ask the message status API, list a
user's chats (last seq, unread), ask a user's presence, and kill -9 and restart router,
history, delivery-retry or gateway (one per run, four per test).

After every step: each online device holds, per chat, exactly the seqs the model says its
connection is owed, each once, in seq order, with the content that was sent; it got no
error frame nor receipt the model did not predict; and every chat's history equals the
model. Redelivery backoff is set far beyond a run, so nothing is resent and nothing fails.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
import trio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from libs.config import MySQLConfig
from tests.e2e.client import User, login, register_and_login
from tools.stack import Stack

from .phones import Phone, Phones, phones_on_a_stack
from .product_model import DeviceKey, Event, ProductModel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]
NEVER_ACK = "never"  # a Phone policy that acks nothing by itself: acks are rules here
EVENTS = ("new_message", "message_updated", "chat_updated", "void")
# Not auth: test stacks generate its signing key at start, so a new auth would end every token.
RESTARTABLE = ("router", "history", "delivery_retry", "gateway")
MAX_USERS, MAX_DEVICES, MAX_GROUPS = 4, 2, 3
CONVERGE_S = 15.0
OUTAGE_ECHO_S = 6.0  # the gateway's request timeout (5 s) and a margin
pick = st.integers(0, 1 << 16)  # an index into whatever the rule chooses from
texts = st.text(min_size=1, max_size=24)


@pytest.fixture(scope="module")
def world(common_env) -> Iterator[tuple[Stack, Phones]]:
    # The first redelivery would come after 600 s: no run lives that long, so nothing is
    # resent and no delivery fails (status is never `failed`).
    with phones_on_a_stack(common_env, 0, NJ_DLV_BACKOFF_S="600", NJ_DLV_MAX_ATTEMPTS="2") as both:
        yield both


class Budget:
    """Restarts are slow: at most one per run and ``total`` per test."""

    def __init__(self, total: int):
        self.left = total


class ProductMachine(RuleBasedStateMachine):
    def __init__(self, stack: Stack, pool: Phones, mysql: MySQLConfig, budget: Budget):
        super().__init__()
        self.stack, self.pool, self.budget = stack, pool, budget
        self.db = pymysql.connect(host=mysql.host, port=mysql.port, user=mysql.user,
                                  password=mysql.password, database=mysql.database, autocommit=True)
        self.model = ProductModel()
        self.users: dict[str, User] = {}
        self.phones: dict[DeviceKey, Phone] = {}
        self.starts: dict[DeviceKey, int] = {}  # index of a connection's first frame
        self.expected_errors: set[str] = set()
        self.restarted = False
        # While a service is down, and for a request timeout after, the gateway may tell a
        # socket that a background catch-up could not read history: {code 5003, no id}.
        self.outage: dict[DeviceKey, tuple[int, int | None]] = {}
        self.outage_ends = 0.0

    # ---- people and devices ---------------------------------------------------------------
    @initialize()
    def two_users_a_direct_chat_and_a_group(self) -> None:
        self.add_user()
        self.add_user()
        self.create_direct(0, 0)
        self.create_group(0, 1)

    @precondition(lambda self: len(self.users) < MAX_USERS)
    @rule()
    def add_user(self) -> None:
        user = self.pool.run(register_and_login, self.pool.http, f"pm_{secrets.token_hex(5)}")
        self.users[user.user_id] = user
        self.model.add_user(user.user_id, user.username)
        self._new_device(user)

    @precondition(lambda self: any(len(self.model.devices_of(u)) < MAX_DEVICES for u in self.users))
    @rule(which=pick)
    def login_another_device(self, which: int) -> None:
        users = [u for u in self.users.values() if len(self.model.devices_of(u.user_id)) < MAX_DEVICES]
        user = users[which % len(users)]
        device_id = f"d{len(self.model.devices_of(user.user_id)) + 1}"
        self._new_device(self.pool.run(login, self.pool.http, user.username, device_id))

    def _new_device(self, user: User) -> None:
        key = (user.user_id, user.device_id)
        self.model.add_device(key)
        self.phones[key] = Phone(user, self.pool.ws_url, policy=NEVER_ACK)
        self._connect(key)

    def _connect(self, key: DeviceKey) -> None:
        phone = self.phones[key]
        self.starts[key] = len(phone.frames)
        self.pool.run(phone.connect, self.pool.nursery)
        self.model.connect(key)

    @precondition(lambda self: self.model.online())
    @rule(which=pick)
    def go_offline(self, which: int) -> None:
        key = _choose(self.model.online(), which)
        self.pool.run(self.phones[key].disconnect)
        self.model.disconnect(key)

    @precondition(lambda self: len(self.model.online()) < len(self.phones))
    @rule(which=pick)
    def reconnect(self, which: int) -> None:
        """The new connection must get exactly what lies above its cursors (the invariant)."""
        self._connect(_choose([k for k in sorted(self.phones) if k not in self.model.online()], which))

    # ---- chats --------------------------------------------------------------------------
    @precondition(lambda self: len(self.users) >= 2)
    @rule(first=pick, second=pick)
    def create_direct(self, first: int, second: int) -> None:
        ids = sorted(self.users)
        a = ids[first % len(ids)]
        b = _choose([u for u in ids if u != a], second)
        existing = self.model.direct_between(a, b)
        answer = self._http("POST", "/api/v1/chats", a, {"type": "direct", "members": [b]})
        assert answer.status_code == (200 if existing else 201), answer.text
        if existing:
            assert answer.json()["chat_id"] == existing, "a repeated direct chat is the same chat"
        else:  # at most one per pair of users
            self.model.create_chat(answer.json()["chat_id"], "direct", a, [b])

    @precondition(lambda self: sum(c.kind == "group" for c in self.model.chats.values()) < MAX_GROUPS)
    @rule(owner=pick, others=st.integers(0, 15))
    def create_group(self, owner: int, others: int) -> None:
        ids = sorted(self.users)
        creator = ids[owner % len(ids)]
        rest = [u for i, u in enumerate(u for u in ids if u != creator) if others >> i & 1]
        answer = self._http("POST", "/api/v1/chats", creator,
                            {"type": "group", "name": "model", "members": rest})
        assert answer.status_code == 201, answer.text
        self.model.create_chat(answer.json()["chat_id"], "group", creator, rest)

    def _joinable(self) -> list[tuple[str, str]]:
        """(group, user) pairs: never-members, or former members with no device online
        (a device online across its own removal and re-adding has no defined window)."""
        return [(c.chat_id, u) for c in self.model.chats.values() if c.kind == "group"
                for u in sorted(self.users) if u not in c.members
                and (u not in c.ever_removed or not self.model.online_of(u))]

    @precondition(lambda self: self._joinable())
    @rule(which=pick)
    def add_member(self, which: int) -> None:
        chat_id, user_id = _choose(self._joinable(), which)
        chat = self.model.chats[chat_id]
        answer = self._http("POST", f"/api/v1/chats/{chat_id}/members", chat.owner, {"user_id": user_id})
        assert answer.status_code == 201, answer.text
        self.model.add_member(chat_id, user_id)

    def _removable(self) -> list[tuple[str, str]]:
        return [(c.chat_id, u) for c in self.model.chats.values() if c.kind == "group"
                for u in sorted(c.members) if u != c.owner]

    @precondition(lambda self: self._removable())
    @rule(which=pick)
    def remove_member(self, which: int) -> None:
        chat_id, user_id = _choose(self._removable(), which)
        owner = self.model.chats[chat_id].owner
        answer = self._http("DELETE", f"/api/v1/chats/{chat_id}/members/{user_id}", owner)
        assert answer.status_code == 204, answer.text
        self.model.remove_member(chat_id, user_id)

    # ---- messages -------------------------------------------------------------------------
    def _senders(self) -> list[tuple[DeviceKey, str]]:
        return [(k, c.chat_id) for k in self.model.online() for c in self.model.chats_of(k[0])]

    @precondition(lambda self: self._senders())
    @rule(sends=st.lists(st.tuples(pick, texts), min_size=1, max_size=6))
    def send(self, sends: list[tuple[int, str]]) -> None:
        """Texts from online devices, one after another; each ack's seq is the model's next."""
        for which, text in sends:
            key, chat_id = _choose(self._senders(), which)
            client_id = secrets.token_hex(8)
            ack = self._send(key, chat_id, client_id, text)
            assert ack["type"] == "message_ack", ack
            assert (ack["chat_id"], ack["seq"]) == (chat_id, self.model.next_seq(chat_id)), \
                f"ack {ack} but the model's next seq of {chat_id} is {self.model.next_seq(chat_id)}"
            assert ack["message_id"] not in self.model.chat_of, "a message id was handed out twice"
            self.model.message(chat_id, key, client_id, ack["message_id"], text)

    def _resendable(self) -> list[tuple[DeviceKey, Event]]:
        return [(k, e) for k in self.model.online() for (user, _), e in sorted(self.model.sent.items())
                if user == k[0] and user in self.model.chats[self.model.chat_of[e.message_id]].members]

    @precondition(lambda self: self._resendable())
    @rule(which=pick)
    def resend_same_client_id(self, which: int) -> None:
        """Idempotent: the original message and seq come back; no new event (the invariant
        would find one on the other devices)."""
        key, event = _choose(self._resendable(), which)
        chat_id = self.model.chat_of[event.message_id]
        ack = self._send(key, chat_id, event.client_msg_id, event.content)
        assert ack["type"] == "message_ack", ack
        assert (ack["message_id"], ack["chat_id"], ack["seq"]) == (event.message_id, chat_id, event.seq), ack

    def _editable(self) -> list[tuple[str, Event]]:
        """Messages whose sender is still a member, not recalled."""
        return [(chat_id, e) for chat_id, c in sorted(self.model.chats.items()) for e in c.events
                if e.type == "message" and e.sender_id in c.members
                and self.model.state_of(chat_id, e.seq)[0] != "recalled"]

    @precondition(lambda self: self._editable())
    @rule(which=pick, recall=st.booleans(), text=texts)
    def edit_or_recall(self, which: int, recall: bool, text: str) -> None:
        """The sender edits or recalls its message: an event of its own at the next seq."""
        chat_id, target = _choose(self._editable(), which)
        path = f"/api/v1/chats/{chat_id}/messages/{target.seq}"
        answer = (self._http("DELETE", f"{path}?mode=recall", target.sender_id) if recall
                  else self._http("PATCH", path, target.sender_id, {"content": text}))
        assert answer.status_code == 200, answer.text
        assert answer.json()["seq"] == self.model.next_seq(chat_id), (answer.json(), self.model.next_seq(chat_id))
        self.model.update(chat_id, target.seq, "recall" if recall else "edit", None if recall else text)

    def _strangers(self) -> list[tuple[DeviceKey, str]]:
        return [(k, chat_id) for k in self.model.online() for chat_id, c in sorted(self.model.chats.items())
                if k[0] not in c.members]

    @precondition(lambda self: self._strangers())
    @rule(which=pick, text=texts)
    def send_as_a_non_member(self, which: int, text: str) -> None:
        key, chat_id = _choose(self._strangers(), which)
        client_id = secrets.token_hex(8)
        self.expected_errors.add(client_id)
        answer = self._send(key, chat_id, client_id, text)
        assert answer["type"] == "error" and answer["code"] == 4003, answer

    def _send(self, key: DeviceKey, chat_id: str, client_id: str, text: str) -> dict[str, Any]:
        frame = {"type": "send_message", "id": client_id, "chat_id": chat_id, "content": text}
        return self.pool.run(_send_and_wait, self.phones[key], frame)

    # ---- acks, reads, receipts -------------------------------------------------------------
    def _ackable(self) -> list[tuple[DeviceKey, str]]:
        return [(k, chat_id) for k in self.model.online() for chat_id in sorted(self.model.devices[k].windows)
                if k[0] in self.model.chats[chat_id].members]

    @precondition(lambda self: self._ackable())
    @rule(which=pick, upto=st.floats(0, 1))
    def ack(self, which: int, upto: float) -> None:
        """A cumulative ack of what the device holds: the cursor becomes the model's."""
        key, chat_id = _choose(self._ackable(), which)
        seq = max(1, round(upto * self.model.window(key, chat_id)[1]))
        self.pool.run(self.phones[key].send, {"type": "ack", "chat_id": chat_id, "seq": seq})
        receipts = self.model.ack(key, chat_id, seq)
        self._wait_for_cursor(key, chat_id, self.model.cursor(key, chat_id))
        self.pool.run(self._receipts_arrive, receipts)

    def _wait_for_cursor(self, key: DeviceKey, chat_id: str, expected: int) -> None:
        found: int | None = None
        for _ in range(int(CONVERGE_S / 0.05)):
            with self.db.cursor() as cur:
                cur.execute("SELECT acked_seq FROM dlv_cursors WHERE user_id = %s AND device_id = %s "
                            "AND chat_id = %s", (key[0], key[1], chat_id))
                row = cur.fetchone()
            found = int(row[0]) if row else 0
            if found >= expected:
                break
            _sleep(0.05)
        assert found == expected, f"{key}'s cursor in {chat_id} is {found}, the model says {expected}"

    def _readable(self) -> list[tuple[str, str]]:
        return [(u, c.chat_id) for u in sorted(self.users) for c in self.model.chats_of(u)]

    @precondition(lambda self: self._readable())
    @rule(which=pick, upto=st.floats(0, 1))
    def read(self, which: int, upto: float) -> None:
        user_id, chat_id = _choose(self._readable(), which)
        seq = max(1, round(upto * self.model.chats[chat_id].last_seq))
        answer = self._http("POST", f"/api/v1/chats/{chat_id}/read", user_id, {"seq": seq})
        assert answer.status_code == 204, answer.text
        self.pool.run(self._receipts_arrive, self.model.read(user_id, chat_id, seq))

    async def _receipts_arrive(self, receipts: set[tuple[DeviceKey, tuple[Any, ...]]]) -> None:
        for key, receipt in sorted(receipts, key=repr):
            try:
                await self.phones[key].wait_for(lambda f, r=receipt: _receipt_key(f) == r,
                                                self.starts[key], CONVERGE_S)
            except trio.TooSlowError:
                raise AssertionError(f"{key} never got the receipt {receipt}") from None

    # ---- history and status ----------------------------------------------------------------
    @precondition(lambda self: self._readable())
    @rule(which=pick, before=st.none() | st.integers(0, 40), after=st.none() | st.integers(0, 40),
          limit=st.sampled_from([1, 2, 3, 5, 200]))
    def page_history(self, which: int, before: int | None, after: int | None, limit: int) -> None:
        user_id, chat_id = _choose(self._readable(), which)
        bounds = {"before_seq": before, "after_seq": after, "limit": limit}
        query = "&".join(f"{k}={v}" for k, v in bounds.items() if v is not None)
        want = self.model.page(chat_id, before, after, limit)
        answer = self._poll(lambda: self._http("GET", f"/api/v1/chats/{chat_id}/messages?{query}", user_id),
                            lambda a: a.status_code == 200 and _seqs(a.json()) == want.seqs)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (_seqs(body), body["has_more"]) == (want.seqs, want.has_more), (bounds, body)
        for item in body["events"]:
            _same_item(item, self.model.event(chat_id, item["seq"]), self._state(chat_id, item["seq"]))

    @rule(which=pick)
    def list_chats(self, which: int) -> None:
        """The user's chats, each with its last seq and unread count (above the read position)."""
        user_id = _choose(sorted(self.users), which)
        want = {c.chat_id: (c.kind, c.last_seq, c.last_seq - self.model.reads.get((user_id, c.chat_id), 0))
                for c in self.model.chats_of(user_id)}
        answer = self._poll(lambda: self._http("GET", "/api/v1/chats", user_id),
                            lambda a: a.status_code == 200 and _chat_list(a.json()) == want)
        assert answer.status_code == 200, answer.text
        assert _chat_list(answer.json()) == want, f"chats of {user_id}: {answer.json()}, model {want}"

    @rule(which=pick, asker=pick)
    def presence(self, which: int, asker: int) -> None:
        """Online while any device of the user is connected, offline once none is."""
        user_id = _choose(sorted(self.users), which)
        want = "online" if self.model.online_of(user_id) else "offline"
        answer = self._poll(lambda: self._http("GET", f"/api/v1/users/{user_id}/presence",
                                               _choose(sorted(self.users), asker)),
                            lambda a: a.status_code == 200 and a.json()["status"] == want)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == want, f"presence of {user_id}: {answer.json()}, model {want}"

    def _askable(self) -> list[tuple[str, str]]:
        return [(message_id, u) for message_id, chat_id in sorted(self.model.chat_of.items())
                for u in sorted(self.model.chats[chat_id].members)]

    @precondition(lambda self: self._askable())
    @rule(which=pick)
    def message_status(self, which: int) -> None:
        message_id, asker = _choose(self._askable(), which)
        want = self.model.status(message_id)
        answer = self._poll(lambda: self._http("GET", f"/api/v1/messages/{message_id}/status", asker),
                            lambda a: a.status_code == 200 and _statuses(a.json()) == want)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        chat_id = self.model.chat_of[message_id]
        event = next(e for e in self.model.chats[chat_id].events if e.message_id == message_id)
        assert (body["chat_id"], body["seq"]) == (chat_id, event.seq), body
        assert _statuses(body) == want, f"status of {message_id}: {body['recipients']}, model {want}"

    # ---- services ---------------------------------------------------------------------------
    @precondition(lambda self: not self.restarted)
    @rule(service=st.sampled_from(RESTARTABLE))
    def restart(self, service: str) -> None:
        """kill -9 and start again; a no-op once the test's budget is spent (the budget is
        outside the run, so it must not change which rules can be drawn)."""
        self.restarted = True
        if self.budget.left == 0:
            return
        self.budget.left -= 1
        self.outage = {k: (len(p.frames), None) for k, p in self.phones.items()}
        self.stack.stop(service, kill=True)
        if service == "gateway":  # every socket went with it
            for key in self.model.online():
                self.pool.run(self.phones[key].disconnect)
                self.model.disconnect(key)
        self.stack.start(service)
        self.stack.wait_ready(service)
        self.outage_ends = time.monotonic() + OUTAGE_ECHO_S

    # ---- invariants -------------------------------------------------------------------------
    @invariant()
    def online_devices_hold_what_they_are_owed(self) -> None:
        self.pool.run(self._converge)
        for key in self.model.online():
            faults = self._connection_faults(key)
            assert not faults, f"{key}:\n  " + "\n  ".join(faults)
        for key, phone in self.phones.items():
            errors = [f for i, f in enumerate(phone.frames) if f["type"] in ("error", "sync_required")
                      and f.get("id") not in self.expected_errors and not self._outage_echo(key, i, f)]
            assert not errors, f"{key} got unexpected frames: {errors}"
        if self.outage_ends and time.monotonic() > self.outage_ends:
            self.outage = {k: (start, end if end is not None else len(self.phones[k].frames))
                           for k, (start, end) in self.outage.items()}
            receipts = {_receipt_key(f) for f in phone.frames if f["type"] == "receipt"}
            assert receipts <= self.model.receipts[key], \
                f"{key} got receipts the model did not predict: {receipts - self.model.receipts[key]}"

    def _outage_echo(self, key: DeviceKey, index: int, frame: dict[str, Any]) -> bool:
        start, end = self.outage.get(key, (0, 0))
        return (frame["type"] == "error" and frame["code"] == 5003 and "id" not in frame
                and start <= index and (end is None or index < end))

    async def _converge(self) -> None:
        with trio.move_on_after(CONVERGE_S):
            while not all(self._holds_enough(k) for k in self.model.online()):  # noqa: ASYNC110
                await trio.sleep(0.02)
        await trio.sleep(0.05)  # a repeat or an extra event would come right behind

    def _holds_enough(self, key: DeviceKey) -> bool:
        for chat_id in self.model.devices[key].windows:
            lows, high = self.model.window(key, chat_id)
            if not set(range(max(lows), high + 1)) <= self._held(key, chat_id):
                return False
        return True

    def _frames(self, key: DeviceKey) -> list[dict[str, Any]]:
        return self.phones[key].frames[self.starts[key]:]

    def _held(self, key: DeviceKey, chat_id: str) -> set[int]:
        own = self.model.devices[key].own.get(chat_id, set())
        return {f["seq"] for f in self._frames(key) if f["type"] in EVENTS and f["chat_id"] == chat_id} | own

    def _connection_faults(self, key: DeviceKey) -> list[str]:
        device, frames = self.model.devices[key], self._frames(key)
        faults = [f"an event of {f['chat_id']}, not one of its chats: {f}" for f in frames
                  if f["type"] in EVENTS and f["chat_id"] not in device.windows]
        for chat_id in sorted(device.windows):
            lows, high = self.model.window(key, chat_id)
            events = [f for f in frames if f["type"] in EVENTS and f["chat_id"] == chat_id]
            own = device.own.get(chat_id, set())
            seqs = [f["seq"] for f in events]
            faults += [f"{chat_id}: {fault}" for fault in _chat_faults(seqs, own, lows, high)]
            faults += [f"{chat_id}: {fault}" for f in events if (fault := self._event_fault(chat_id, f))]
        return faults

    def _event_fault(self, chat_id: str, frame: dict[str, Any]) -> str | None:
        if frame["seq"] > self.model.chats[chat_id].last_seq:
            return _event_fault(frame, None, [])
        event = self.model.event(chat_id, frame["seq"])
        versions = self.model.versions(chat_id, event.seq) if event.type == "message" else []
        return _event_fault(frame, event, versions)

    @invariant()
    def history_equals_the_model(self) -> None:
        for chat_id, chat in sorted(self.model.chats.items()):
            asker = sorted(chat.members)[0]
            want = list(range(1, chat.last_seq + 1))
            answer = self._poll(lambda c=chat_id, a=asker: self._http(
                "GET", f"/api/v1/chats/{c}/messages?limit=200", a),
                lambda a, w=want: a.status_code == 200 and _seqs(a.json()) == w)
            assert answer.status_code == 200, answer.text
            assert _seqs(answer.json()) == want, f"history of {chat_id}: {_seqs(answer.json())}, model {want}"
            for item in answer.json()["events"]:
                _same_item(item, chat.events[item["seq"] - 1], self._state(chat_id, item["seq"]))

    def _state(self, chat_id: str, seq: int) -> tuple[str, str | None]:
        event = self.model.event(chat_id, seq)
        return self.model.state_of(chat_id, seq) if event.type == "message" else ("", None)

    # ---- plumbing ---------------------------------------------------------------------------
    def _http(self, method: str, path: str, user_id: str, body: Any = None) -> Any:
        user = self.users[user_id]

        async def call() -> Any:
            return await self.pool.http.request(method, path, headers=user.auth, json=body)
        return self.pool.run(call)

    def _poll(self, ask: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
        """``ask()`` until ``done`` says yes or CONVERGE_S pass; the last answer."""
        answer = ask()
        for _ in range(int(CONVERGE_S / 0.1)):
            if done(answer):
                break
            _sleep(0.1)
            answer = ask()
        return answer

    def teardown(self) -> None:
        for key in self.model.online():
            self.pool.run(self.phones[key].disconnect)
        self.db.close()


# ---- pure judgements ------------------------------------------------------------------------
def _choose(items: list[Any], which: int) -> Any:
    return items[which % len(items)]


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _chat_faults(seqs: list[int], own: set[int], lows: frozenset[int], high: int) -> list[str]:
    """The seqs of one chat's events one connection read, in arrival order, against its
    window: every seq from one of ``lows`` to ``high`` once (its own messages held from
    their message_ack, a reply that is not ordered with the events), nothing else, events
    in seq order."""
    faults = [f"seq {s} came {seqs.count(s)} times" for s in sorted(set(seqs)) if seqs.count(s) > 1]
    held = set(seqs) | own
    if not any(held == set(range(low, high + 1)) for low in lows):
        faults.append(f"holds {sorted(held)}, owed {sorted(lows)}..{high}")
    first = list(dict.fromkeys(seqs))
    if first != sorted(first):
        faults.append(f"out of order: {first}")
    return faults


def _event_fault(frame: dict[str, Any], event: Event | None, versions: list[str | None]) -> str | None:
    if event is None:
        return f"seq {frame['seq']} is beyond the chat's last event: {frame}"
    if frame["type"] == "new_message" and event.type == "message":
        got = (frame["message_id"], frame["sender_id"], frame["sender_device_id"], frame["client_msg_id"])
        want = (event.message_id, event.sender_id, event.sender_device_id, event.client_msg_id)
        if got != want:
            return f"seq {event.seq} is {got}, model {want}"
        return None if frame["content"] in versions else f"seq {event.seq} reads {frame['content']!r}, " \
            f"the message had {versions}"
    if frame["type"] == "message_updated" and event.type == "message_updated":
        got = (frame["kind"], frame["target_seq"], frame.get("content") if event.kind == "edit" else "")
        want = (event.kind, event.target_seq, event.content)
        return None if got == want else f"seq {event.seq} is {got}, model {want}"
    if frame["type"] == "chat_updated" and event.type == "chat_updated":
        return None if frame["kind"] == event.kind else f"seq {event.seq} is {frame['kind']}, model {event.kind}"
    return f"seq {event.seq} is a {frame['type']} frame, the model has a {event.type}: {frame}"


def _same_item(item: dict[str, Any], event: Event, state: tuple[str, str | None]) -> None:
    """A history item against the model's event and, for a message, its current state."""
    if event.type == "message":
        got = (item["type"], item["message_id"], item["sender_id"], item["sender_device_id"],
               item["client_msg_id"], item.get("state"), item["content"])
        want = ("message", event.message_id, event.sender_id, event.sender_device_id,
                event.client_msg_id, *state)
    elif event.type == "message_updated":
        got = (item["type"], item["kind"], item["target_seq"])
        want = ("message_updated", event.kind, event.target_seq)
    else:
        got, want = (item["type"], item.get("kind")), ("chat_updated", event.kind)
    assert got == want, f"history item {item['chat_id']}#{item['seq']}: {got}, model {want}"


def _chat_list(body: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    return {c["chat_id"]: (c["type"], c["last_seq"], c["unread"]) for c in body.get("chats", [])}


def _seqs(body: dict[str, Any]) -> list[int]:
    return [item["seq"] for item in body.get("events", [])]


def _statuses(body: dict[str, Any]) -> dict[DeviceKey, str]:
    return {(r["user_id"], r["device_id"]): r["status"] for r in body.get("recipients", [])}


def _receipt_key(frame: dict[str, Any]) -> tuple[Any, ...] | None:
    if frame["type"] != "receipt":
        return None
    return (frame["chat_id"], frame["seq"], frame["user_id"], frame.get("device_id"), frame["status"])


async def _send_and_wait(phone: Phone, frame: dict[str, Any]) -> dict[str, Any]:
    """Write ``frame``; its message_ack or error frame."""
    start = len(phone.frames)
    await phone.send(frame)
    try:
        return await phone.wait_for(lambda f: f["type"] in ("message_ack", "error")
                                    and f.get("id") == frame["id"], start, CONVERGE_S)
    except trio.TooSlowError:
        raise AssertionError(f"no answer to {frame}") from None


def test_product_model(world: tuple[Stack, Phones], mysql_config: MySQLConfig) -> None:
    """Property 3: Message Delivery Guarantees — every online device of every member holds
    every event of its chats once, in seq order, with confirmation to the sender.
    Property 4: Offline Message Handling — a device that comes back gets what it is owed.
    Property 5: Direct and Group Messaging — direct chats, groups, members added and removed.
    Property 16: Delivery Status API — pending / delivered / read per device as modelled.
    Requirements R1.5, R2.1, R2.3, R2.4, R2.5, R2.6, R5.1, R6.5, R7.1, R7.3, R7.5: the same,
    across kill -9 and restart of router, history, delivery-retry and gateway."""
    stack, pool = world
    budget = Budget(total=4)
    run_state_machine_as_test(
        lambda: ProductMachine(stack, pool, mysql_config, budget),
        # A real system does not replay a failure step for step: report it as found.
        settings=settings(max_examples=24, stateful_step_count=30, deadline=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck)))
