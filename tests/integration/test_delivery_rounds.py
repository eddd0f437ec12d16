"""delivery-retry's one-transaction rounds (real MariaDB/MySQL): a scheduler round's claim
reads what its looks and retries need, the projection returns whom to push to, an ack
write returns the messages its receipts cover; each equal to the per-item reads."""

from __future__ import annotations

import random
import secrets

import pytest

from libs.db import Database
from libs.migrate import migrate
from services.delivery_retry import app, domain, retries
from services.delivery_retry.domain import Ack, StreamEvent
from services.delivery_retry.retries import EventRef
from services.delivery_retry.schedule_storage import Check, ScheduleStorage
from services.delivery_retry.storage import Storage

SENDERS = [("ann", "p"), ("ann", "q"), ("bob", "p"), (None, None)]
NOW, LEASE = 10**13, 30_000


@pytest.fixture
def db(mysql_config):
    migrate(mysql_config, "delivery-retry", app.MIGRATIONS)
    database = Database(mysql_config)
    yield database
    database.close()


def random_chat(rng: random.Random, chat_id: str) -> list[StreamEvent]:
    events = [StreamEvent(chat_id, 1, kind="chat_updated", added=frozenset({"ann", "bob", "cy"})),
              StreamEvent(chat_id, 2, kind="chat_updated", removed=frozenset({"cy"}))]
    for seq in range(3, rng.randint(4, 30)):
        user, device = rng.choice(SENDERS)
        events.append(StreamEvent(chat_id, seq, kind="message" if user else "void", ts=seq,
                                  message_id=f"{chat_id}-{seq}" if user else None,
                                  sender_id=user, sender_device_id=device))
    return events


def refs(events: list[StreamEvent]) -> list[EventRef]:
    return [EventRef(e.seq, e.kind, e.message_id, e.sender_id, e.sender_device_id, e.ts)
            for e in events]


async def test_a_round_claims_looks_and_retries_with_what_they_need(db):
    storage, plans = Storage(db, check_delay_ms=0), ScheduleStorage(db)
    for seed in range(10):
        rng, chat_id = random.Random(seed), "r" + secrets.token_hex(6)
        events = random_chat(rng, chat_id)
        pushed = await storage.apply_projection(domain.project(events), 1, events)
        if any(e.kind == "message" for e in events):
            assert sorted(pushed[chat_id]) == ["ann", "bob"]
        last = events[-1].seq
        acked = rng.randint(0, last)
        if acked:
            await storage.write_acks([Ack("ann", "p", chat_id, acked)], 2)
        await plans.finish_checks([(Check(chat_id, last), [("bob", "p", "gw", last)])], 1, 0)
        await db.execute("UPDATE dlv_checks SET due_ts = 1 WHERE chat_id = %s", (chat_id,))
        await db.execute("INSERT INTO dlv_checks (chat_id, check_seq, next_seq, due_ts) "
                         "VALUES (%s, %s, %s, 1) ON DUPLICATE KEY UPDATE due_ts = 1",
                         (chat_id, last, last))
        due = await plans.claim_due(NOW, LEASE, 10_000)
        looks = [look for look in due.looks if look.check.chat_id == chat_id]
        assert len(looks) == 1 and sorted(looks[0].members) == ["ann", "bob"]
        assert looks[0].cursors == ({("ann", "p"): acked} if acked else {})
        attempts = [a for a in due.attempts if a.retry.chat_id == chat_id]
        assert [(a.retry.key, a.cursor, a.needed) for a in attempts] == [
            (("bob", "p", chat_id), 0, retries.needed_up_to(refs(events), 0, last, "bob", "p"))]
        assert due.next_due_ms is not None and due.next_due_ms <= NOW + LEASE
        again = await plans.claim_due(NOW, LEASE, 10_000)  # leased: nobody else takes them
        assert not [look for look in again.looks if look.check.chat_id == chat_id]


async def test_one_transaction_finishes_many_looks(db):
    plans = ScheduleStorage(db)
    chats = ["f" + secrets.token_hex(6) for _ in range(3)]
    for chat_id in chats:
        await db.execute("INSERT INTO dlv_checks (chat_id, check_seq, next_seq, due_ts) "
                         "VALUES (%s, 2, %s, 0)", (chat_id, 5 if chat_id == chats[0] else 2))
    await plans.finish_checks([(Check(c, 2), [("ann", "p", "gw", 2)]) for c in chats], 100, 50)
    left = await db.fetchall("SELECT chat_id, check_seq, due_ts FROM dlv_checks WHERE chat_id IN "
                             "(%s, %s, %s)", chats)
    assert left == [{"chat_id": chats[0], "check_seq": 5, "due_ts": 150}]  # seq 5 came meanwhile
    started = await db.fetchall("SELECT chat_id FROM dlv_retries WHERE user_id = 'ann' AND "
                                "chat_id IN (%s, %s, %s) ORDER BY chat_id", chats)
    assert [r["chat_id"] for r in started] == sorted(chats)


async def test_an_ack_write_returns_the_messages_its_receipts_cover(db):
    storage = Storage(db)
    for seed in range(10):
        rng, chat_id = random.Random(seed), "k" + secrets.token_hex(6)
        events = random_chat(rng, chat_id)
        await storage.apply_projection(domain.project(events), 1, events)
        last = events[-1].seq
        first = rng.randint(0, last)
        if first:
            await storage.write_acks([Ack("bob", "p", chat_id, first)], 2)
        written = await storage.write_ack_batch(
            [Ack("bob", "p", chat_id, last), Ack("bob", "p", "nochat", 1)], 3)
        messages = [r for r in refs(events) if r.kind == "message" and first < r.seq <= last]
        assert written.covered.get(chat_id, []) == messages
        assert "nochat" not in written.covered
