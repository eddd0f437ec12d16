"""delivery-retry's SQL merges exactly like its domain rules (real MariaDB/MySQL)."""

from __future__ import annotations

import random
import secrets

import pytest

from libs.db import Database
from libs.migrate import migrate
from services.delivery_retry import app, domain
from services.delivery_retry.domain import Ack, AckOutcome, StreamEvent
from services.delivery_retry.errors import BadRequest, NotMember, UnknownChat
from services.delivery_retry.storage import Storage

USERS = ["ann", "bob", "cy", "dee"]


@pytest.fixture
def storage(mysql_config):
    migrate(mysql_config, "delivery-retry", app.MIGRATIONS)
    db = Database(mysql_config)
    yield Storage(db)
    db.close()


def random_history(rng: random.Random, chat_id: str) -> list[StreamEvent]:
    """One chat: created at seq 1, then messages and member changes, seq dense."""
    events = [StreamEvent(chat_id, 1, added=frozenset(rng.sample(USERS, 2)))]
    for seq in range(2, rng.randint(2, 25)):
        who = frozenset(rng.sample(USERS, rng.randint(1, 2)))
        change = rng.choice(["none", "none", "added", "removed"])
        events.append(StreamEvent(chat_id, seq, added=who if change == "added" else frozenset(),
                                  removed=who if change == "removed" else frozenset()))
    return events


async def stored(storage: Storage, chat_id: str) -> tuple[int, dict[str, tuple[bool, int]]]:
    chat = await storage.db.fetchone("SELECT last_seq FROM dlv_chats WHERE chat_id = %s", (chat_id,))
    rows = await storage.db.fetchall(
        "SELECT user_id, active, member_seq FROM dlv_members WHERE chat_id = %s", (chat_id,))
    assert chat is not None
    return int(chat["last_seq"]), {r["user_id"]: (bool(r["active"]), int(r["member_seq"]))
                                   for r in rows}


async def test_shuffled_duplicated_batches_store_the_in_order_projection(storage):
    for seed in range(25):
        rng = random.Random(seed)
        chat_id = f"s{secrets.token_hex(5)}"
        events = random_history(rng, chat_id)
        expected = domain.project(events)
        replay = events + rng.choices(events, k=len(events) // 2)
        rng.shuffle(replay)
        for start in range(0, len(replay), rng.randint(1, 6)):
            await storage.apply_projection(domain.project(replay[start:start + 6]), 1)
        last_seq, members = await stored(storage, chat_id)
        assert last_seq == expected.last_seq[chat_id]
        assert members == {u: (m.active, m.seq) for (_, u), m in expected.members.items()}


async def test_write_acks_checks_and_merges_in_one_batch(storage):
    tag = secrets.token_hex(5)
    chat_id, ann, bob = f"a{tag}", f"ann-{tag}", f"bob-{tag}"
    await storage.apply_projection(domain.project([
        StreamEvent(chat_id, 1, added=frozenset({ann, bob})),
        StreamEvent(chat_id, 5, removed=frozenset({bob}))]), 1)
    outcomes = await storage.write_acks([
        Ack(ann, "d1", chat_id, 3), Ack(ann, "d1", chat_id, 4), Ack(ann, "d1", chat_id, 2),
        Ack(bob, "d1", chat_id, 2), Ack(ann, "d1", chat_id, 6), Ack(ann, "d1", "nochat", 1),
        Ack(ann, "d2", chat_id, 1)], 10)
    assert outcomes[:3] == [AckOutcome(4, True), AckOutcome(4, True), AckOutcome(4, True)]
    assert isinstance(outcomes[3], NotMember)
    assert isinstance(outcomes[4], BadRequest)
    assert isinstance(outcomes[5], UnknownChat)
    assert outcomes[6] == AckOutcome(1, True)
    again = await storage.write_acks([Ack(ann, "d1", chat_id, 4), Ack(ann, "d1", chat_id, 1)], 11)
    assert again == [AckOutcome(4, False), AckOutcome(4, False)]
    view = await storage.device_chat(ann, "d1", chat_id)
    assert (view.last_seq, view.is_member, view.acked_seq) == (5, True, 4)
    assert await storage.behind_chats(ann, "d1") == [
        {"chat_id": chat_id, "after_seq": 4, "last_seq": 5}]
    assert await storage.behind_chats(bob, "d1") == []
