"""delivery-retry's schedule tables (real MariaDB/MySQL): the SQL agrees with the pure
rules, replicas never claim the same row, and a schedule outlives the process."""

from __future__ import annotations

import random
import secrets

import pytest
import trio

from libs.db import Database
from libs.migrate import migrate
from services.delivery_retry import app, domain, retries
from services.delivery_retry.domain import StreamEvent
from services.delivery_retry.retries import EventRef
from services.delivery_retry.schedule_storage import Check, Retry, ScheduleStorage
from services.delivery_retry.storage import Storage

SENDERS = [("ann", "p"), ("ann", "q"), ("bob", "p"), (None, None)]


@pytest.fixture
def db(mysql_config):
    migrate(mysql_config, "delivery-retry", app.MIGRATIONS)
    database = Database(mysql_config)
    yield database
    database.close()


def random_chat(rng: random.Random, chat_id: str) -> list[StreamEvent]:
    events = []
    for seq in range(1, rng.randint(2, 30)):
        user, device = rng.choice(SENDERS)
        kind = "message" if user else rng.choice(["chat_updated", "void"])
        events.append(StreamEvent(chat_id, seq, kind=kind, ts=seq,
                                  message_id=f"{chat_id}-{seq}" if user else None,
                                  sender_id=user, sender_device_id=device))
    return events


async def test_needed_up_to_in_sql_is_the_pure_rule(db):
    storage, plans = Storage(db), ScheduleStorage(db)
    for seed in range(30):
        rng, chat_id = random.Random(seed), "c" + secrets.token_hex(6)
        events = random_chat(rng, chat_id)
        await storage.apply_projection(domain.project(events), 1, events)
        refs = [EventRef(e.seq, e.kind, e.message_id, e.sender_id, e.sender_device_id, e.ts) for e in events]
        for user, device in (("ann", "p"), ("bob", "p"), ("cy", "z")):
            cursor = rng.randint(0, len(events))
            target = rng.randint(cursor, len(events))
            retry = Retry(user, device, chat_id, "gw", target, 1)
            assert await plans.needed_up_to(retry, cursor) == \
                retries.needed_up_to(refs, cursor, target, user, device)


async def test_projection_schedules_one_look_per_chat_that_moves_on(db):
    storage, plans = Storage(db, check_delay_ms=0), ScheduleStorage(db)
    chat_id = "c" + secrets.token_hex(6)
    first = [StreamEvent(chat_id, 1, kind="chat_updated", added=frozenset({"ann"}))]
    await storage.apply_projection(domain.project(first), 1, first)
    claimed = [c for c in await plans.claim_checks(10**13, 30_000, 1000) if c.chat_id == chat_id]
    assert claimed == [Check(chat_id, 1)]
    later = [StreamEvent(chat_id, 2, kind="void"), StreamEvent(chat_id, 3, kind="void")]
    await storage.apply_projection(domain.project(later), 2, later)
    await plans.finish_check(claimed[0], [], 5, 100)  # seq 3 arrived meanwhile: look again
    row = await db.fetchone("SELECT check_seq, due_ts FROM dlv_checks WHERE chat_id = %s", (chat_id,))
    assert row == {"check_seq": 3, "due_ts": 105}
    await plans.finish_check(Check(chat_id, 3), [], 6, 100)
    assert await db.fetchone("SELECT 1 FROM dlv_checks WHERE chat_id = %s", (chat_id,)) is None


async def test_concurrent_claimers_never_share_a_row(db, mysql_config):
    plans = ScheduleStorage(db)
    chat_id = "c" + secrets.token_hex(6)
    rows = [(f"u{i}", "d", chat_id, "gw", 5, 1, 0) for i in range(60)]
    await db.executemany("INSERT INTO dlv_retries (user_id, device_id, chat_id, gateway_id, target_seq, "
                         "attempts, next_attempt_ts) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    other = Database(mysql_config)
    seen: list[list[Retry]] = [[], []]

    async def claim(index: int, store: ScheduleStorage) -> None:
        for _ in range(10):
            got = await store.claim_retries(1, 60_000, 7)
            seen[index].extend(r for r in got if r.chat_id == chat_id)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(claim, 0, plans)
            nursery.start_soon(claim, 1, ScheduleStorage(other))
    finally:
        other.close()
    keys = [r.key for r in seen[0] + seen[1]]
    assert len(keys) == len(set(keys)) == 60


async def test_a_claimed_retry_falls_due_again_after_its_lease(db):
    plans = ScheduleStorage(db)
    chat_id = "c" + secrets.token_hex(6)
    await plans.finish_check(Check(chat_id, 4), [("ann", "p", "gw1", 4)], 1000, 100)
    mine = lambda got: [r for r in got if r.chat_id == chat_id]  # noqa: E731
    assert mine(await plans.claim_retries(1000, 500, 1000)) == [Retry("ann", "p", chat_id, "gw1", 4, 1)]
    assert mine(await plans.claim_retries(1400, 500, 1000)) == []  # leased (e.g. a replica died)
    assert len(mine(await plans.claim_retries(1500, 500, 1000))) == 1
